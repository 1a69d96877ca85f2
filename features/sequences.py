"""Per-user source-domain behaviour sequences as daily snapshots, and joining them onto rows.

One implementation shared by the training-table builder (models.dataset) and the Feast feature
store (features.store), so the two cannot drift apart.

Conventions (a contract; other stages rely on them):
- A snapshot row (user_id, snapshot_time) holds, for every behaviour type in
  contract.BEHAVIOR_TYPES, the user's last `max_len` source-domain behaviours of that type with
  event_time strictly before snapshot_time (a UTC midnight), time-ordered, newest last, ties
  broken by item_id, as aligned list<int64> columns contract.seq_col(behavior, field).
- A snapshot at midnight D is emitted for each user that had any source behaviour on day D-1
  (only changes are stored); the latest snapshot <= an event's time is the one in force.
- Side info that is unknown (item missing from the items table, or null there) is RESERVED_ID
  (-1) inside the lists; no real id may be -1 (ContractError otherwise).
- Element times (seq_<behavior>_event_time) are int64 epoch microseconds, UTC.
- A user with none of a behaviour type has an empty list (never null).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features import io

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_LEN = 50
RESERVED_ID = -1  # unknown side info inside sequence lists; never a real id
SEQUENCE_TYPE = pa.list_(pa.int64())
_DAY_US = 86_400_000_000
_ROW = "__row"  # internal row-number column used to keep the caller's order


def sequence_columns() -> list[str]:
    """All sequence column names, behaviour-major then field (contract.BEHAVIOR_TYPES x SEQ_FIELDS)."""
    return [C.seq_col(b, f) for b in C.BEHAVIOR_TYPES for f in C.SEQ_FIELDS]


def snapshot_schema() -> pa.Schema:
    """Schema of the table sequence_snapshots returns."""
    fields = [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.SNAPSHOT_TIME, C.TIMESTAMP, nullable=False),
    ]
    fields += [pa.field(c, SEQUENCE_TYPE, nullable=False) for c in sequence_columns()]
    return pa.schema(fields)


def empty_sequences(num_rows: int) -> pa.Table:
    """A table of `num_rows` rows whose every sequence column is an empty list."""
    offsets = pa.array(np.zeros(num_rows + 1, dtype=np.int32))
    empty = pa.ListArray.from_arrays(offsets, pa.array([], pa.int64()))
    return pa.table({c: empty for c in sequence_columns()}, schema=_seq_schema())


def _seq_schema() -> pa.Schema:
    """Schema of the sequence columns alone."""
    return pa.schema([pa.field(c, SEQUENCE_TYPE, nullable=False) for c in sequence_columns()])


def _fill_empty(arr: pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
    """Cast a list column to list<int64> and turn nulls into empty lists; nulls inside lists are errors."""
    try:
        arr = arr.cast(SEQUENCE_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise C.ContractError(
            f"sequence column {name!r} has type {arr.type}, expected {SEQUENCE_TYPE}"
        ) from exc
    if pc.any(pc.is_null(pc.list_flatten(arr))).as_py():
        raise C.ContractError(
            f"sequence column {name!r} has null elements; use {RESERVED_ID} for unknown ids"
        )
    if arr.null_count:
        arr = pc.if_else(pc.is_null(arr), pa.scalar([], SEQUENCE_TYPE), arr)
    return arr


def normalize_sequences(frame: pa.Table | pd.DataFrame) -> pa.Table | pd.DataFrame:
    """Make sequence columns canonical: list<int64>, null -> empty list (e.g. Feast output for unseen users).

    Returns the same type as given; pandas sequence columns come back as pd.ArrowDtype(list<int64>),
    exactly what attach_sequences returns. Every sequence column must be present.
    """
    import pandas as pd

    names = sequence_columns()
    cols = list(frame.columns) if isinstance(frame, pd.DataFrame) else frame.column_names
    missing = [c for c in names if c not in cols]
    if missing:
        raise C.ContractError(f"sequence columns missing: {missing}")
    if isinstance(frame, pd.DataFrame):
        out = frame.copy()
        for c in names:
            arr = _fill_empty(pa.array(frame[c], from_pandas=True), c)
            out[c] = pd.Series(pd.arrays.ArrowExtensionArray(arr), index=frame.index)
        return out
    for c in names:
        idx = frame.column_names.index(c)
        frame = frame.set_column(idx, pa.field(c, SEQUENCE_TYPE), _fill_empty(frame[c], c))
    return frame


def _check_ids(behaviors: pa.Table, items: pa.Table) -> None:
    """ContractError when a real id equals RESERVED_ID (it would be confused with 'unknown')."""
    checks = [(C.BEHAVIORS, behaviors, C.ITEM_ID)] + [(C.ITEMS, items, c) for c in (C.ITEM_ID, *C.SIDE_INFO)]
    for table, tbl, col in checks:
        hits = pc.sum(pc.equal(tbl[col], RESERVED_ID)).as_py() or 0
        if hits:
            raise C.ContractError(
                f"{table}.{col}: {hits} row(s) use id {RESERVED_ID}, "
                "which is reserved for 'unknown' in sequences"
            )
    if pc.count_distinct(items[C.ITEM_ID]).as_py() != items.num_rows:
        raise C.ContractError(
            f"{C.ITEMS}.{C.ITEM_ID} has duplicate item ids; each item needs exactly one row"
        )


def source_domains(domains: pa.Table) -> list[str]:
    """Names of the domains whose role is source, sorted."""
    mask = pc.equal(domains[C.ROLE], C.ROLE_SOURCE)
    return sorted(set(domains.filter(mask)[C.DOMAIN].to_pylist()))


def _to_us(col: pa.ChunkedArray | pa.Array, name: str) -> pa.ChunkedArray | pa.Array:
    """A timestamp column as int64 epoch microseconds (naive means UTC; ns is floored to us)."""
    if not pa.types.is_timestamp(col.type):
        raise C.ContractError(f"column {name!r} has type {col.type}, expected a timestamp")
    # Flooring ns to us cannot move an event across a midnight, which is all comparisons here need.
    return pc.cast(pc.cast(col, pa.timestamp(col.type.unit)), pa.timestamp("us"), safe=False).cast(pa.int64())


def sequence_snapshots(
    behaviors: pa.Table, items: pa.Table, domains: pa.Table, max_len: int = DEFAULT_MAX_LEN
) -> pa.Table:
    """Daily per-user snapshots of the last `max_len` source behaviours of each type (see module doc).

    Returns a pyarrow Table with snapshot_schema(): user_id, snapshot_time (UTC midnight), then
    seq_<behavior>_<field> list<int64> columns, sorted by (user_id, snapshot_time).
    """
    import duckdb

    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    behaviors = io.conform(behaviors, C.BEHAVIORS, "behaviors")
    items = io.conform(items, C.ITEMS, "items")
    domains = io.conform(domains, C.DOMAINS, "domains")
    _check_ids(behaviors, items)
    src = source_domains(domains)
    if not src:
        raise C.ContractError("domains table has no domain with role='source'; sequences need one")
    behaviors = behaviors.filter(pc.is_in(behaviors[C.DOMAIN], pa.array(src)))
    unknown = set(pc.unique(behaviors[C.BEHAVIOR]).to_pylist()) - set(C.BEHAVIOR_TYPES)
    if unknown:
        raise C.ContractError(
            f"behaviors has unknown behavior type(s) {sorted(unknown)}; known: {C.BEHAVIOR_TYPES}"
        )

    beh = pa.table(
        {
            "u": behaviors[C.USER_ID],
            "bt": behaviors[C.BEHAVIOR],
            "t": _to_us(behaviors[C.EVENT_TIME], C.EVENT_TIME),
            "i": behaviors[C.ITEM_ID],
        }
    )
    side = pa.table({"i": items[C.ITEM_ID], **{f"f_{c}": items[c] for c in C.SIDE_INFO}})
    con = duckdb.connect()
    try:
        con.register("beh", beh)
        con.register("side", side)
        side_sel = ", ".join(f"coalesce(s.f_{c}, {RESERVED_ID}) AS f_{c}" for c in C.SIDE_INFO)
        # rn: 1-based position in the user's stream of one behaviour type, in (time, item) order.
        con.execute(
            f"""CREATE TEMP TABLE ev AS
            SELECT b.u, b.bt, b.t, b.i, {side_sel},
                   row_number() OVER (PARTITION BY b.u, b.bt ORDER BY b.t, b.i) AS rn
            FROM beh b LEFT JOIN side s ON b.i = s.i"""
        )
        field_expr = {C.ITEM_ID: "i", C.EVENT_TIME: "t", **{c: f"f_{c}" for c in C.SIDE_INFO}}
        lists = ", ".join(f"list({e} ORDER BY rn) AS l_{f}" for f, e in field_expr.items())
        con.execute(f"CREATE TEMP TABLE lists AS SELECT u, bt, {lists} FROM ev GROUP BY u, bt")
        # c = number of events before the next midnight = max rn of the day (ranks are time-ordered).
        con.execute(
            f"""CREATE TEMP TABLE daily AS
            SELECT u, bt, t - ((t % {_DAY_US}) + {_DAY_US}) % {_DAY_US} + {_DAY_US} AS snap, max(rn) AS c
            FROM ev GROUP BY ALL"""
        )
        con.execute("DROP TABLE ev")
        con.execute("CREATE TEMP TABLE snaps AS SELECT DISTINCT u, snap FROM daily")
        selects, joins = [], []
        for k, b in enumerate(C.BEHAVIOR_TYPES):
            joins.append(
                f"ASOF LEFT JOIN (SELECT u, snap, c FROM daily WHERE bt = '{b}') d{k}"
                f" ON s.u = d{k}.u AND s.snap >= d{k}.snap"
                f" LEFT JOIN (SELECT * FROM lists WHERE bt = '{b}') l{k} ON s.u = l{k}.u"
            )
            for f in C.SEQ_FIELDS:
                selects.append(
                    f"coalesce(list_slice(l{k}.l_{f}, greatest(d{k}.c - {max_len}, 0) + 1, d{k}.c),"
                    f" []::BIGINT[]) AS \"{C.seq_col(b, f)}\""
                )
        sql = (
            f"SELECT s.u, s.snap, {', '.join(selects)} FROM snaps s {' '.join(joins)} ORDER BY s.u, s.snap"
        )
        res = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    arrays = [res["u"], res["snap"].cast(C.TIMESTAMP)]
    arrays += [res[c].cast(SEQUENCE_TYPE) for c in sequence_columns()]
    return pa.Table.from_arrays(arrays, schema=snapshot_schema())


def attach_sequences(rows: pa.Table | pd.DataFrame, snapshots: pa.Table) -> pa.Table | pd.DataFrame:
    """Append to each row (user_id, event_time) the sequence columns of its latest snapshot <= event_time.

    Rows with no such snapshot get empty lists; no row is dropped or reordered. Returns the same
    type as `rows` (pandas: sequence columns as pd.ArrowDtype(list<int64>), index kept).
    """
    import duckdb
    import pandas as pd

    is_pandas = isinstance(rows, pd.DataFrame)
    tbl = pa.Table.from_pandas(rows[[C.USER_ID, C.EVENT_TIME]], preserve_index=False) if is_pandas else rows
    for need in (C.USER_ID, C.EVENT_TIME):
        if need not in tbl.column_names:
            raise C.ContractError(f"rows lack column {need!r} needed to attach sequences")
    clash = [c for c in sequence_columns() if c in (rows.columns if is_pandas else tbl.column_names)]
    if clash:
        raise C.ContractError(f"rows already have sequence column(s) {clash}")
    needed = (C.USER_ID, C.SNAPSHOT_TIME, *sequence_columns())
    missing = [c for c in needed if c not in snapshots.column_names]
    if missing:
        raise C.ContractError(f"snapshots lack column(s) {missing}")
    if tbl[C.USER_ID].null_count or tbl[C.EVENT_TIME].null_count:
        raise C.ContractError("rows have null user_id or event_time; cannot attach sequences")
    n_keys = snapshots.group_by([C.USER_ID, C.SNAPSHOT_TIME]).aggregate([]).num_rows
    if n_keys != snapshots.num_rows:
        raise C.ContractError(
            "snapshots have duplicate (user_id, snapshot_time) rows; the as-of join needs unique keys"
        )

    keys = pa.table(
        {
            _ROW: pa.array(np.arange(tbl.num_rows, dtype=np.int64)),
            "u": tbl[C.USER_ID].cast(pa.int64()),
            "t": _to_us(tbl[C.EVENT_TIME], C.EVENT_TIME),
        }
    )
    snaps = pa.table(
        {
            "u": snapshots[C.USER_ID],
            "snap": _to_us(snapshots[C.SNAPSHOT_TIME], C.SNAPSHOT_TIME),
            **{c: snapshots[c] for c in sequence_columns()},
        }
    )
    sel = ", ".join(f'coalesce(s."{c}", []::BIGINT[]) AS "{c}"' for c in sequence_columns())
    con = duckdb.connect()
    try:
        con.register("k", keys)
        con.register("snaps", snaps)
        res = con.sql(
            f"SELECT k.{_ROW}, {sel} FROM k ASOF LEFT JOIN snaps s"
            f" ON k.u = s.u AND k.t >= s.snap ORDER BY k.{_ROW}"
        ).to_arrow_table()
    finally:
        con.close()
    seqs = {c: res[c].cast(SEQUENCE_TYPE) for c in sequence_columns()}
    if is_pandas:
        out = rows.copy()
        for c, arr in seqs.items():
            out[c] = pd.Series(pd.arrays.ArrowExtensionArray(arr), index=rows.index)
        return out
    for c, arr in seqs.items():
        tbl = tbl.append_column(pa.field(c, SEQUENCE_TYPE, nullable=False), arr)
    return tbl
