"""Per-user source-domain behaviour sequences as daily snapshots, and joining them onto rows.

One implementation shared by the training-table builder (features.dataset) and the Feast feature
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

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features import io

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_LEN = 50
# what a row's history holds: behaviours before its day's midnight, or before its own event_time
RESOLUTION_DAY, RESOLUTION_EVENT = "day", "event"
RESOLUTIONS: tuple[str, ...] = (RESOLUTION_DAY, RESOLUTION_EVENT)
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


def _dense(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A null-free arrow column as a dense numpy array (chunks combined)."""
    return col.to_numpy() if isinstance(col, pa.Array) else col.combine_chunks().to_numpy()


def _asof(left_u: np.ndarray, left_t: np.ndarray, right_u: np.ndarray, right_t: np.ndarray) -> np.ndarray:
    """For each left (u, t): index of the right row with the same u and the latest right_t <= t, else -1."""
    n_right = len(right_u)
    u = np.concatenate([right_u, left_u])
    t = np.concatenate([right_t, left_t])
    # at equal (u, t) right rows sort first, so `right_t <= t` (not <) matches
    kind = np.concatenate([np.zeros(n_right, np.int8), np.ones(len(left_u), np.int8)])
    idx = np.concatenate([np.arange(n_right), np.arange(len(left_u))])
    order = np.lexsort((idx, kind, t, u))
    u, kind, idx = u[order], kind[order], idx[order]
    pos = np.arange(len(order))
    last_right = np.maximum.accumulate(np.where(kind == 0, pos, -1))
    safe = np.maximum(last_right, 0)
    hit = (last_right >= 0) & (u[safe] == u)
    found = np.where(hit, idx[safe], -1)
    out = np.empty(len(left_u), np.int64)
    is_left = kind == 1
    out[idx[is_left]] = found[is_left]
    return out


def _gather_lists(values: list[np.ndarray], start: np.ndarray, size: np.ndarray) -> list[pa.ListArray]:
    """Per array v: list<int64> whose i-th list is v[start[i] : start[i] + size[i]] (one shared gather)."""
    offsets = np.zeros(len(size) + 1, np.int64)
    np.cumsum(size, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("sequence column exceeds 2**31 elements; build snapshots for fewer users at a time")
    idx = np.repeat(start - offsets[:-1], size)
    idx += np.arange(offsets[-1])
    arrow_offsets = pa.array(offsets.astype(np.int32))
    return [pa.ListArray.from_arrays(arrow_offsets, pa.array(v[idx])) for v in values]


def _source_behaviors(behaviors: pa.Table, items: pa.Table, domains: pa.Table) -> pa.Table:
    """Contract-checked source-domain behaviours of known types (ContractError otherwise)."""
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
    return behaviors


def _streams(
    behaviors: pa.Table, items: pa.Table
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Every behaviour as a list element, one stream per (user, type) in (time, item) order.

    Returns u, bt (type index), t (us), the SEQ_FIELDS arrays, whether each element starts its
    stream, and each element's stream start: the one ordering both sequence functions slice.
    """
    u = _dense(behaviors[C.USER_ID])
    t = _dense(_to_us(behaviors[C.EVENT_TIME], C.EVENT_TIME))
    item = _dense(behaviors[C.ITEM_ID])
    bt = _dense(pc.index_in(behaviors[C.BEHAVIOR], value_set=pa.array(C.BEHAVIOR_TYPES)))
    # side info by item lookup; unknown item or null side info -> RESERVED_ID
    item_pos = pc.index_in(behaviors[C.ITEM_ID], value_set=items[C.ITEM_ID])
    fields = {C.ITEM_ID: item, C.EVENT_TIME: t}
    for c in C.SIDE_INFO:
        fields[c] = _dense(pc.fill_null(pc.take(items[c], item_pos), RESERVED_ID))
    # the value as a token (stars, rounded price); no value -> RESERVED_ID
    value = _dense(pc.fill_null(behaviors[C.VALUE], np.nan).cast(pa.float64()))
    fields[C.VALUE] = np.where(np.isnan(value), RESERVED_ID, np.round(np.nan_to_num(value))).astype(np.int64)

    # one stream per (user, behaviour type), in (time, item) order: the tie-break is item_id
    order = np.lexsort((item, t, bt, u))
    u, t, bt = u[order], t[order], bt[order]
    fields = {f: fields[f][order] for f in C.SEQ_FIELDS}
    n = len(order)
    pos = np.arange(n)
    new_stream = np.ones(n, bool)
    new_stream[1:] = (u[1:] != u[:-1]) | (bt[1:] != bt[:-1])
    stream_start = np.maximum.accumulate(np.where(new_stream, pos, 0))
    return u, bt, t, fields, new_stream, stream_start


def sequence_snapshots(
    behaviors: pa.Table, items: pa.Table, domains: pa.Table, max_len: int = DEFAULT_MAX_LEN
) -> pa.Table:
    """Daily per-user snapshots of the last `max_len` source behaviours of each type (see module doc).

    Returns a pyarrow Table with snapshot_schema(): user_id, snapshot_time (UTC midnight), then
    seq_<behavior>_<field> list<int64> columns, sorted by (user_id, snapshot_time).
    """
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    behaviors = _source_behaviors(behaviors, items, domains)
    if behaviors.num_rows == 0:
        return snapshot_schema().empty_table()

    u, bt, t, fields, new_stream, stream_start = _streams(behaviors, io.conform(items, C.ITEMS, "items"))
    n = len(u)
    day = t // _DAY_US  # numpy floor division: correct before 1970 too
    # the last event of each (user, type, day): the stream's length at the next midnight ends there
    last = np.ones(n, bool)
    last[:-1] = new_stream[1:] | (day[1:] != day[:-1])
    d_pos = np.flatnonzero(last)
    d_u, d_bt, d_snap = u[d_pos], bt[d_pos], day[d_pos] + 1
    d_end, d_start = d_pos + 1, stream_start[d_pos]

    # a snapshot at midnight D for every user with any source behaviour on day D-1
    s_order = np.lexsort((d_snap, d_u))
    s_u, s_snap = d_u[s_order], d_snap[s_order]
    first = np.ones(len(s_u), bool)
    first[1:] = (s_u[1:] != s_u[:-1]) | (s_snap[1:] != s_snap[:-1])
    s_u, s_snap = s_u[first], s_snap[first]

    arrays: list[pa.Array] = [pa.array(s_u), pa.array(s_snap * _DAY_US).cast(C.TIMESTAMP)]
    for k in range(len(C.BEHAVIOR_TYPES)):
        mine = np.flatnonzero(d_bt == k)
        j = _asof(s_u, s_snap, d_u[mine], d_snap[mine])
        if len(mine) == 0:  # nobody has this behaviour type: all lists empty
            end = start = np.zeros(len(s_u), np.int64)
        else:
            jj = mine[np.maximum(j, 0)]
            end = np.where(j >= 0, d_end[jj], 0)
            start = np.where(j >= 0, np.maximum(d_start[jj], end - max_len), 0)
        arrays += _gather_lists([fields[f] for f in C.SEQ_FIELDS], start, end - start)
    return pa.Table.from_arrays(arrays, schema=snapshot_schema())


def attach_sequences(rows: pa.Table | pd.DataFrame, snapshots: pa.Table) -> pa.Table | pd.DataFrame:
    """Append to each row (user_id, event_time) the sequence columns of its latest snapshot <= event_time.

    Rows with no such snapshot get empty lists; no row is dropped or reordered. Returns the same
    type as `rows` (pandas: sequence columns as pd.ArrowDtype(list<int64>), index kept).
    """
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

    j = _asof(
        _dense(tbl[C.USER_ID].cast(pa.int64())),
        _dense(_to_us(tbl[C.EVENT_TIME], C.EVENT_TIME)),
        _dense(snapshots[C.USER_ID].cast(pa.int64())),
        _dense(_to_us(snapshots[C.SNAPSHOT_TIME], C.SNAPSHOT_TIME)),
    )
    seqs = normalize_sequences(snapshots.select(sequence_columns()))
    found = j >= 0
    pick = np.where(found, j, 0)
    gathered: dict[str, pa.ListArray] = {}
    for b in C.BEHAVIOR_TYPES:
        names = [C.seq_col(b, f) for f in C.SEQ_FIELDS]
        cols = [seqs[c].combine_chunks() for c in names]
        offsets = cols[0].offsets.to_numpy()
        lens = np.diff(offsets)
        for name, col in zip(names[1:], cols[1:], strict=True):
            if not np.array_equal(np.diff(col.offsets.to_numpy()), lens):
                raise C.ContractError(f"snapshot column {name!r} is not aligned with {names[0]!r}")
        # offsets index the child values directly (they already account for any slice)
        if len(lens) == 0:  # no snapshots at all: every list is empty
            start = size = np.zeros(len(pick), np.int64)
        else:
            start = np.where(found, offsets[:-1][pick], 0)
            size = np.where(found, lens[pick], 0)
        values = [col.values.to_numpy() for col in cols]
        gathered.update(zip(names, _gather_lists(values, start, size), strict=True))
    if is_pandas:
        out = rows.copy()
        for c in sequence_columns():
            out[c] = pd.Series(pd.arrays.ArrowExtensionArray(gathered[c]), index=rows.index)
        return out
    for c in sequence_columns():
        tbl = tbl.append_column(pa.field(c, SEQUENCE_TYPE, nullable=False), gathered[c])
    return tbl


def event_time_sequences(
    rows: pa.Table, behaviors: pa.Table, items: pa.Table, domains: pa.Table, max_len: int = DEFAULT_MAX_LEN
) -> pa.Table:
    """The seq columns of each row (user_id, event_time): the user's last `max_len` source behaviours
    of each type strictly before the row's own event_time (event-time resolution, what a serving
    path with same-day pushes sees), from the same streams sequence_snapshots slices. At a UTC
    midnight this equals attach_sequences over the daily snapshots (tested)."""
    behaviors = _source_behaviors(behaviors, items, domains)
    qu = _dense(rows[C.USER_ID].cast(pa.int64()))
    qt = _dense(_to_us(rows[C.EVENT_TIME], C.EVENT_TIME))
    if behaviors.num_rows == 0:
        return empty_sequences(rows.num_rows)
    u, bt, t, fields, _, _ = _streams(behaviors, io.conform(items, C.ITEMS, "items"))
    m = len(qu)
    arrays: dict[str, pa.Array] = {}
    for k, b in enumerate(C.BEHAVIOR_TYPES):
        mine = np.flatnonzero(bt == k)  # this type's elements: one contiguous run per user, by time
        first = np.searchsorted(u[mine], qu, side="left")  # the user's first element, in `mine`
        # rows and elements in one (user, time) order, a row before elements of its own time:
        # the elements before a row are the earlier users' and this user's strictly earlier ones
        is_elem = np.concatenate([np.zeros(m, np.int8), np.ones(len(mine), np.int8)])
        order = np.lexsort((is_elem, np.concatenate([qt, t[mine]]), np.concatenate([qu, u[mine]])))
        earlier = np.empty(m, np.int64)
        at_row = np.flatnonzero(is_elem[order] == 0)
        earlier[order[at_row]] = np.cumsum(is_elem[order])[at_row]
        count = earlier - first
        has = count > 0
        head = mine[np.minimum(first, max(len(mine) - 1, 0))] if len(mine) else np.zeros(m, np.int64)
        end = np.where(has, head + count, 0)
        start = np.where(has, np.maximum(head, end - max_len), 0)
        lists = _gather_lists([fields[f] for f in C.SEQ_FIELDS], start, end - start)
        arrays.update({C.seq_col(b, f): arr for f, arr in zip(C.SEQ_FIELDS, lists, strict=True)})
    return pa.table({c: arrays[c] for c in sequence_columns()}, schema=_seq_schema())


def sequences_as_behaviors(seqs: pa.Table, domain: str) -> pa.Table:
    """The behaviours a table of users' lists (user_id + seq columns) holds, as contract behaviour rows
    in `domain` (a source domain): the inverse of the lists sequence_snapshots builds, up to side info
    (looked up again from the items table) and values (the stored value tokens)."""
    users = _dense(seqs[C.USER_ID].cast(pa.int64()))
    seqs = normalize_sequences(seqs.select([C.USER_ID, *sequence_columns()]))
    parts = []
    for b in C.BEHAVIOR_TYPES:
        items = seqs[C.seq_col(b, C.ITEM_ID)].combine_chunks()
        lens = _dense(pc.list_value_length(items)).astype(np.int64)
        value = _dense(pc.list_flatten(seqs[C.seq_col(b, C.VALUE)]).combine_chunks()).astype(np.float64)
        times = _dense(pc.list_flatten(seqs[C.seq_col(b, C.EVENT_TIME)]).combine_chunks())
        parts.append(pa.table({
            C.EVENT_TIME: pa.array(times, pa.int64()).cast(pa.timestamp("us")).cast(C.TIMESTAMP),
            C.DOMAIN: pa.array([domain] * int(lens.sum()), pa.string()),
            C.USER_ID: pa.array(np.repeat(users, lens)),
            C.ITEM_ID: pc.list_flatten(items),
            C.BEHAVIOR: pa.array([b] * int(lens.sum()), pa.string()),
            C.VALUE: pa.array(np.where(value == RESERVED_ID, np.nan, value), from_pandas=True),
        }))
    return io.conform(pa.concat_tables(parts), C.BEHAVIORS, "sequences")


def merge_sequences(
    current: pa.Table, behaviors: pa.Table, items: pa.Table, domains: pa.Table, max_len: int = DEFAULT_MAX_LEN
) -> pa.Table:
    """Each user's lists after new `behaviors` join `current` ones (user_id + seq columns): the lists
    sequence_snapshots builds from both, as of after the newest event, one row per user (sorted).

    A new event equal to a held one (same user, type, item and event time) is dropped, so merging
    the same behaviours again changes nothing; late events take their place in (time, item) order.
    """
    src = source_domains(io.conform(domains, C.DOMAINS, "domains"))
    if not src:
        raise C.ContractError("domains table has no domain with role='source'; sequences need one")
    held = sequences_as_behaviors(current, src[0])
    both = pa.concat_tables([held, io.conform(behaviors, C.BEHAVIORS)])
    is_new = np.arange(both.num_rows) >= held.num_rows
    keep = pc.is_in(both[C.DOMAIN], pa.array(src)).to_numpy(zero_copy_only=False)
    both, is_new = both.filter(pa.array(keep)), is_new[keep]
    behavior = pc.index_in(both[C.BEHAVIOR], value_set=pa.array(C.BEHAVIOR_TYPES))
    key = [_dense(both[C.USER_ID]), _dense(behavior), _dense(both[C.ITEM_ID]),
           _dense(_to_us(both[C.EVENT_TIME], C.EVENT_TIME))]
    # a new event equal to a held one (user, type, item, time) is that event again: drop it; equal
    # events within one batch stay (sequence_snapshots keeps them too)
    order = np.lexsort([is_new, *key[::-1]])  # held rows first within equal keys
    start = np.ones(len(order), bool)
    if len(order):
        start[1:] = ~np.all([k[order][1:] == k[order][:-1] for k in key], axis=0)
    group = np.cumsum(start) - 1
    group_held = ~is_new[order][start]  # whether each key group's first row is a held one
    drop = np.zeros(len(order), bool)
    drop[order] = is_new[order] & group_held[group]
    both = both.filter(pa.array(~drop))
    snaps = sequence_snapshots(both, items, domains, max_len)  # sorted by (user_id, snapshot_time)
    users = _dense(snaps[C.USER_ID])
    last = np.ones(len(users), bool)
    last[:-1] = users[1:] != users[:-1]
    return snaps.filter(pa.array(last)).drop_columns([C.SNAPSHOT_TIME])


def with_sequences(
    rows: pa.Table,
    behaviors: pa.Table,
    items: pa.Table,
    domains: pa.Table,
    max_len: int = DEFAULT_MAX_LEN,
    history_at: datetime | None = None,
    resolution: str = RESOLUTION_DAY,
) -> pa.Table:
    """`rows` (user_id, event_time, ...) with the seq_* columns of their users' histories appended.

    As of each row's event_time, or, with `history_at`, as of that one time for every row (see
    features.dataset.build_training_table); at `resolution` "day" (the daily snapshot in force) or
    "event" (every behaviour strictly before that time, event_time_sequences). Per user: a
    partition of the users gives the rows of those users exactly (features.ray_data relies on it).
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    times = rows[C.EVENT_TIME]
    if history_at is not None:
        times = pa.array(np.full(rows.num_rows, history_at), type=rows.schema.field(C.EVENT_TIME).type)
    keys = pa.table({C.USER_ID: rows[C.USER_ID], C.EVENT_TIME: times})
    if resolution == RESOLUTION_EVENT:
        seqs = event_time_sequences(keys, behaviors, items, domains, max_len)
    else:
        seqs = attach_sequences(keys, sequence_snapshots(behaviors, items, domains, max_len))
    for name in sequence_columns():
        rows = rows.append_column(pa.field(name, SEQUENCE_TYPE, nullable=False), seqs[name])
    return rows
