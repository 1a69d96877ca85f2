"""The data stages on Ray Data (`--engine ray`): the local functions, run on user partitions in parallel.

A user's sequence snapshots depend on that user's behaviours alone, and a row's sequences on its
user's snapshots alone. So the users are hash-partitioned (user_id mod P), each partition's rows and
behaviours go to the object store, and one Ray Data task per partition runs the *same* function the
local engine runs (features.sequences): one implementation, two engines, equal results (tested as
sorted tables). The concatenated partitions are put back in the local engine's row order.

What runs where: the driver reads the tables (features.io, as the local engine does) and splits them
(vectorised); the partitions are computed by Ray workers, one CPU and one thread each
(dacdr.engine.worker_env). docs/scale-out.md says what a cluster-sized read would change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dacdr.engine import init_ray
from features import contract as C
from features import sequences, suites

PART = "__part"  # the partition id of a task's input row (Ray Data's batch)
ROW = "__row"  # a row's position in the caller's table, to restore its order


def default_partitions() -> int:
    """Two partitions per CPU of the Ray cluster: a slow partition does not idle the others."""
    import ray

    return max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))


def partition_rows(codes: np.ndarray, parts: int) -> list[np.ndarray]:
    """Row positions of each of `parts` partitions, by non-negative int `codes` mod `parts`, ascending."""
    if parts < 1:
        raise ValueError(f"partitions must be >= 1, got {parts}")
    part = np.mod(codes, parts)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(parts)]


def split_by_user(tbl: pa.Table, parts: int) -> list[pa.Table]:
    """`tbl`'s rows in `parts` pieces by user_id mod `parts`; each piece keeps the rows' order."""
    return [tbl.take(pa.array(rows)) for rows in partition_rows(tbl[C.USER_ID].to_numpy(), parts)]


def _run_partition(batch: pa.Table, fn: Callable[..., pa.Table], pieces: list[list], args: tuple) -> pa.Table:
    """One Ray Data task: `fn(piece_0[p], piece_1[p], ..., *args)` for the partition p of its batch."""
    import ray

    (part,) = batch[PART].to_pylist()  # batch_size=1: one partition per call
    return fn(*(ray.get(refs[part]) for refs in pieces), *args)


def map_partitions(
    fn: Callable[..., pa.Table], pieces: list[list[pa.Table]], args: tuple, schema: pa.Schema
) -> pa.Table:
    """`fn` on every partition p (its arguments: each list's p-th table, then `args`) on Ray Data;
    the results concatenated in partition order, cast to `schema`."""
    import ray

    parts = len(pieces[0])
    refs = [[ray.put(p) for p in tables] for tables in pieces]
    ray.data.DataContext.get_current().enable_progress_bars = False  # a log line per partition otherwise
    ids = ray.data.from_items([{PART: p} for p in range(parts)], override_num_blocks=parts)
    done = ids.map_batches(_run_partition, batch_size=1, batch_format="pyarrow", fn_args=(fn, refs, args))
    tables = [t for t in ray.get(done.to_arrow_refs()) if t.num_rows]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])


def sequence_snapshots(
    behaviors: pa.Table,
    items: pa.Table,
    domains: pa.Table,
    max_len: int = sequences.DEFAULT_MAX_LEN,
    partitions: int | None = None,
) -> pa.Table:
    """features.sequences.sequence_snapshots on Ray Data, one user partition per task: the same table."""
    init_ray()
    parts = partitions if partitions is not None else default_partitions()
    out = map_partitions(sequences.sequence_snapshots, [split_by_user(behaviors, parts)],
                         (items, domains, max_len), sequences.snapshot_schema())
    return out.sort_by([(C.USER_ID, "ascending"), (C.SNAPSHOT_TIME, "ascending")])


def with_sequences(
    rows: pa.Table,
    behaviors: pa.Table,
    items: pa.Table,
    domains: pa.Table,
    max_len: int = sequences.DEFAULT_MAX_LEN,
    history_at: datetime | None = None,
    resolution: str = sequences.RESOLUTION_DAY,
    partitions: int | None = None,
) -> pa.Table:
    """features.sequences.with_sequences on Ray Data, one user partition per task: the same table."""
    init_ray()
    parts = partitions if partitions is not None else default_partitions()
    numbered = rows.append_column(ROW, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    seq_fields = [pa.field(c, sequences.SEQUENCE_TYPE, nullable=False) for c in sequences.sequence_columns()]
    schema = pa.schema([*numbered.schema, *seq_fields])
    pieces = [split_by_user(numbered, parts), split_by_user(behaviors, parts)]
    args = (items, domains, max_len, history_at, resolution)
    out = map_partitions(sequences.with_sequences, pieces, args, schema)
    # back to the caller's order: position ROW of the result holds row ROW
    where = np.empty(out.num_rows, np.int64)
    where[out[ROW].to_numpy()] = np.arange(out.num_rows)
    return out.take(pa.array(where)).drop_columns([ROW])


def _piece_masks(piece: pa.Table, unparsable: pa.Table, table: str, ctx: suites.RuleContext) -> pa.Table:
    """One partition's rule masks (features.suites.evaluate_rules) beside its rows' positions."""
    flags = {c: unparsable[c].to_numpy(zero_copy_only=False) for c in unparsable.column_names if c != ROW}
    masks = suites.evaluate_rules(piece, suites.row_rules(table), replace(ctx, unparsable=flags))
    return pa.table({ROW: unparsable[ROW], **masks})


def evaluate_rules(
    tbl: pa.Table, table: str, ctx: suites.RuleContext, partitions: int | None = None
) -> dict[str, np.ndarray]:
    """features.suites.evaluate_rules on Ray Data: the same masks, in `tbl`'s row order.

    Rows sharing a uniqueness key (suites.UNIQUE_KEYS) fall in one partition and keep their order,
    so "the first copy is kept" picks the same row; every other rule is row by row.
    """
    init_ray()
    parts = partitions if partitions is not None else default_partitions()
    key = suites.UNIQUE_KEYS.get(table)
    if key is None:
        codes = np.arange(tbl.num_rows)
    else:
        encoded = pc.dictionary_encode(tbl[key[0]], null_encoding="encode").combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    positions = partition_rows(codes, parts)
    flags = pa.table({ROW: np.arange(tbl.num_rows, dtype=np.int64),
                      **{c: np.asarray(m, bool) for c, m in ctx.unparsable.items()}})
    names = [rule.name for rule in suites.row_rules(table)]
    schema = pa.schema([pa.field(ROW, pa.int64()), *(pa.field(n, pa.bool_()) for n in names)])
    out = map_partitions(_piece_masks, [[tbl.take(pa.array(p)) for p in positions],
                                        [flags.take(pa.array(p)) for p in positions]],
                         (table, replace(ctx, unparsable={})), schema)
    rows = out[ROW].to_numpy()
    masks = {}
    for name in names:
        mask = np.empty(tbl.num_rows, bool)
        mask[rows] = out[name].to_numpy(zero_copy_only=False)
        masks[name] = mask
    return masks
