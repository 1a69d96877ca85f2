"""The training table: one row per target-domain impression, with side info, cold flag, domain features
and source-domain behaviour sequences; time-based train/validation/test split written to parquet."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dacdr.engine import LOCAL, RAY
from features import contract as C
from features import io
from features.sequences import (
    DEFAULT_MAX_LEN,
    RESERVED_ID,
    RESOLUTION_DAY,
    RESOLUTIONS,
    SEQUENCE_TYPE,
    sequence_columns,
    with_sequences,
)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
MANIFEST = "manifest.json"
_DAY_US = 86_400_000_000


def _has_table(root: Path, table: str) -> bool:
    """True when the landing zone has at least one file of `table`."""
    return bool(C.list_partitions(root, table))


def _read(logs: Path, base_logs: Path | None, table: str) -> pa.Table:
    """Read `table` from `logs`, else from `base_logs`; ContractError naming both when neither has it."""
    if _has_table(logs, table):
        return io.read_table(logs, table)
    if base_logs is not None and _has_table(base_logs, table):
        return io.read_table(base_logs, table)
    where = f"{logs}" + (f" or base logs {base_logs}" if base_logs is not None else "")
    hint = (
        "" if base_logs is not None else " (an onboarding zone needs --base-logs pointing at the main zone)"
    )
    raise C.ContractError(f"{where}: no {table!r} table{hint}")


def read_domains(logs: Path, base_logs: Path | None = None) -> pa.Table:
    """The domains table of `logs`; with `base_logs`, its source rows come from base_logs' domains table.

    A domain listed in both with a different role or task is a ContractError.
    """
    if not _has_table(logs, C.DOMAINS):
        raise C.ContractError(
            f"{logs}: no {C.DOMAINS!r} table; the builder needs each domain's role and task"
        )
    dom = io.read_table(logs, C.DOMAINS)
    if base_logs is not None:
        base = io.read_table(base_logs, C.DOMAINS)
        base_src = base.filter(pc.equal(base[C.ROLE], C.ROLE_SOURCE))
        dom = pa.concat_tables([base_src, dom], promote_options="permissive")
    df = dom.to_pandas()
    conflict = df.groupby(C.DOMAIN)[[C.ROLE, C.TASK]].nunique().max(axis=1) > 1
    if conflict.any():
        raise C.ContractError(
            f"domains {sorted(conflict[conflict].index)} are listed with different role/task"
        )
    bad_role = sorted(set(df[C.ROLE]) - set(C.ROLES))
    bad_task = sorted(set(df[C.TASK]) - set(C.TASKS))
    if bad_role or bad_task:
        raise C.ContractError(f"domains table has unknown role(s) {bad_role} / task(s) {bad_task}")
    for name in df[C.DOMAIN]:
        C.check_domain_name(name)
    # first listing of a domain wins (base_logs' source row when given)
    keep = ~df.duplicated(C.DOMAIN, keep="first").to_numpy()
    return dom.filter(pa.array(keep))


def _utc_days(times: pa.ChunkedArray) -> np.ndarray:
    """UTC day numbers (days since epoch) of a timestamp column."""
    us = pc.cast(times, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    return us // _DAY_US


def _day_str(day: int) -> str:
    """ISO date string of a day number."""
    return str(np.datetime64(int(day), "D"))


def _day_num(date: str) -> int:
    """Day number of an ISO date string; ValueError naming the bad value."""
    try:
        return int(np.datetime64(date, "D").astype(np.int64))
    except ValueError as exc:
        raise ValueError(f"train_end must be an ISO date YYYY-MM-DD, got {date!r}") from exc


def impression_days(table: pd.DataFrame) -> list[str]:
    """Sorted distinct UTC days (YYYY-MM-DD) of a frame's event_time."""
    days = _utc_days(pa.array(table[C.EVENT_TIME]))
    return [_day_str(d) for d in np.unique(days)]


def target_impressions(
    logs: Path, base_logs: Path | None = None, train_end: str | None = None
) -> tuple[pa.Table, pa.Table]:
    """The training table's rows: target-domain impressions in row order, with is_cold; and the domains.

    Shared by this builder and the Feast path (features.store), so both select the same rows.
    `train_end` (YYYY-MM-DD) is the first day outside the training window (default: the last day).
    """
    logs = Path(logs)
    base_logs = Path(base_logs) if base_logs is not None else None
    if not _has_table(logs, C.IMPRESSIONS):
        raise C.ContractError(f"{logs}: no {C.IMPRESSIONS!r} table")
    domains = read_domains(logs, base_logs)
    imps = io.read_table(logs, C.IMPRESSIONS)
    known = set(domains[C.DOMAIN].to_pylist())
    unknown = sorted(set(pc.unique(imps[C.DOMAIN]).to_pylist()) - known)
    if unknown:
        raise C.ContractError(f"{logs}/impressions: domain(s) {unknown} are not in the domains table")
    targets = domains.filter(pc.equal(domains[C.ROLE], C.ROLE_TARGET))
    if targets.num_rows == 0:
        raise C.ContractError(f"{logs}: the domains table has no domain with role='target'")
    imps = imps.filter(pc.is_in(imps[C.DOMAIN], targets[C.DOMAIN]))
    if imps.num_rows == 0:
        raise C.ContractError(
            f"{logs}: no impressions in the target domain(s) {targets[C.DOMAIN].to_pylist()}"
        )
    imps = imps.sort_by(
        [(c, "ascending") for c in (C.EVENT_TIME, C.REQUEST_ID, C.ITEM_ID, C.DOMAIN, C.USER_ID, C.LABEL)]
    )

    days = _utc_days(imps[C.EVENT_TIME])
    end_day = int(days.max()) if train_end is None else _day_num(train_end)
    # cold: no impression of this user in this domain before the training window's end
    warm = (
        imps.filter(pa.array(days < end_day))
        .select([C.USER_ID, C.DOMAIN])
        .group_by([C.USER_ID, C.DOMAIN])
        .aggregate([])
    )
    key = pc.binary_join_element_wise(imps[C.DOMAIN], pc.cast(imps[C.USER_ID], pa.string()), "\x1f")
    warm_key = pc.binary_join_element_wise(warm[C.DOMAIN], pc.cast(warm[C.USER_ID], pa.string()), "\x1f")
    return imps.append_column(C.IS_COLD, pc.invert(pc.is_in(key, value_set=warm_key))), domains


def build_training_table(
    logs: Path,
    max_len: int = DEFAULT_MAX_LEN,
    base_logs: Path | None = None,
    train_end: str | None = None,
    history_at: datetime | None = None,
    resolution: str = RESOLUTION_DAY,
    engine: str = LOCAL,
) -> pd.DataFrame:
    """One row per target-domain impression of `logs`, ordered by (event_time, request_id, item_id).

    Columns: the impression columns, item side info (RESERVED_ID -1 when unknown), is_cold,
    d_<feature> domain features (strings), then the seq_* columns (pd.ArrowDtype(list<int64>)).
    `train_end` (YYYY-MM-DD) is the first day outside the training window; is_cold is True when
    the user had no impression in the row's domain before it. Default: the last impression day.
    `base_logs` supplies behaviors/items (and the source domain rows) an onboarding zone lacks.
    `history_at` (UTC) attaches every row the source history as of that time instead of as of the
    row's own event_time: the cold-start protocol's "full source profile" (the paper's Table 3 and
    the MF bridges use every source rating of a user). Never for serving-faithful data: a row then
    sees source behaviour from after its own time.
    `resolution`: "day" (default) gives each row the lists as of its day's midnight, what the
    online store serves after the nightly materialization; "event" gives the behaviours strictly
    before the row's own event_time, what it serves when same-day behaviour is pushed
    (`dacdr features push`). Both come from the same streams (features.sequences).
    `engine` `ray` computes the sequences on Ray Data (features.ray_data): the same table.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    logs = Path(logs)
    base_logs = Path(base_logs) if base_logs is not None else None
    imps, domains = target_impressions(logs, base_logs, train_end)
    behaviors = _read(logs, base_logs, C.BEHAVIORS)
    items = _read(logs, base_logs, C.ITEMS)

    item_pos = pc.index_in(imps[C.ITEM_ID], value_set=items[C.ITEM_ID])
    if pc.count_distinct(items[C.ITEM_ID]).as_py() != items.num_rows:
        raise C.ContractError(
            f"{C.ITEMS}.{C.ITEM_ID} has duplicate item ids; each item needs exactly one row"
        )
    cols: dict[str, pa.ChunkedArray | pa.Array] = {c: imps[c] for c in C.columns(C.IMPRESSIONS)}
    for c in C.SIDE_INFO:
        cols[c] = pc.fill_null(pc.take(items[c], item_pos), RESERVED_ID)
    cols[C.IS_COLD] = imps[C.IS_COLD]
    feats = C.domain_feature_columns(domains.column_names)
    dom_pos = pc.index_in(imps[C.DOMAIN], value_set=domains[C.DOMAIN])
    for f in feats:
        cols[C.domain_feature_col(f)] = pc.take(domains[f].cast(pa.string()), dom_pos)
    table = pa.table(cols)

    if engine == RAY:
        from features import ray_data

        table = ray_data.with_sequences(table, behaviors, items, domains, max_len, history_at, resolution)
    else:
        table = with_sequences(table, behaviors, items, domains, max_len, history_at, resolution)
    return table.to_pandas(types_mapper=_list_to_arrow_dtype)


def _list_to_arrow_dtype(t: pa.DataType) -> pd.ArrowDtype | None:
    """Keep list columns arrow-backed in pandas (a numpy array per cell would cost GBs on demo)."""
    return pd.ArrowDtype(t) if pa.types.is_list(t) else None


def split_by_time(
    table: pd.DataFrame, test_days: int = 1, val_days: int = 1, burn_in_days: int = 0
) -> dict[str, pd.DataFrame]:
    """Split by UTC day: last `test_days` days are test, the `val_days` before validation, the rest train.

    The first `burn_in_days` days train nothing: their rows only let histories grow. A zone's source
    history starts empty on its first day, so early rows see far shorter sequences than serving does.
    """
    if test_days < 1 or val_days < 0 or burn_in_days < 0:
        raise ValueError(
            f"need test_days >= 1, val_days >= 0 and burn_in_days >= 0, got {test_days}, {val_days}, "
            f"{burn_in_days}"
        )
    day = _utc_days(pa.array(table[C.EVENT_TIME]))
    uniq = np.unique(day)
    if len(uniq) < test_days + val_days + burn_in_days + 1:
        raise ValueError(
            f"the table spans {len(uniq)} day(s); a split with {test_days} test, {val_days} validation "
            f"and {burn_in_days} burn-in day(s) needs at least {test_days + val_days + burn_in_days + 1}"
        )
    test_start = uniq[-test_days]
    val_start = uniq[-test_days - val_days] if val_days else test_start
    train_start = uniq[burn_in_days]
    if np.all(day[1:] >= day[:-1]):
        # time-ordered (as build_training_table returns it): each split is a zero-copy row range
        s, v, t = np.searchsorted(day, [train_start, val_start, test_start])
        ranges = {"train": slice(s, v), "validation": slice(v, t), "test": slice(t, len(day))}
        return {k: table.iloc[r].reset_index(drop=True) for k, r in ranges.items()}
    masks = {
        "train": (day >= train_start) & (day < val_start),
        "validation": (day >= val_start) & (day < test_start),
        "test": day >= test_start,
    }
    return {k: table[m].reset_index(drop=True) for k, m in masks.items()}


def training_schema(table: pd.DataFrame) -> pa.Schema:
    """The parquet schema of a training table (exact types, so every split file agrees)."""
    fields = []
    impression = C.SCHEMAS[C.IMPRESSIONS]
    for name in table.columns:
        if name in impression.names:
            fields.append(impression.field(name))
        elif name in C.SIDE_INFO:
            fields.append(pa.field(name, pa.int64(), nullable=False))
        elif name == C.IS_COLD:
            fields.append(pa.field(name, pa.bool_(), nullable=False))
        elif name.startswith("seq_"):
            fields.append(pa.field(name, SEQUENCE_TYPE, nullable=False))
        else:
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


def training_window_end(logs: Path, domains: pa.Table, test_days: int, val_days: int) -> str:
    """First test day (YYYY-MM-DD) of a zone's target impressions; ValueError when too few days."""
    logs = Path(logs)
    if not _has_table(logs, C.IMPRESSIONS):
        raise C.ContractError(f"{logs}: no {C.IMPRESSIONS!r} table")
    imps = io.read_table(logs, C.IMPRESSIONS)
    targets = domains.filter(pc.equal(domains[C.ROLE], C.ROLE_TARGET))[C.DOMAIN]
    days = np.unique(_utc_days(imps.filter(pc.is_in(imps[C.DOMAIN], targets))[C.EVENT_TIME]))
    if len(days) < test_days + val_days + 1:
        raise ValueError(
            f"{logs}: target impressions span {len(days)} day(s); {test_days} test + {val_days} validation "
            f"day(s) need at least {test_days + val_days + 1}"
        )
    return _day_str(days[-test_days])


def spec_manifest(domains: pa.Table, max_len: int) -> dict:
    """What FeatureSpec.fit reads of a manifest: max_len, behaviour types, domain features, each domain's
    task and role (in the order of `domains`)."""
    names, tasks, roles = (domains[c].to_pylist() for c in (C.DOMAIN, C.TASK, C.ROLE))
    return {
        "max_len": max_len,
        "behavior_types": list(C.BEHAVIOR_TYPES),
        "domain_features": C.domain_feature_columns(domains.column_names),
        "domains": {d: {C.TASK: t, C.ROLE: r} for d, t, r in zip(names, tasks, roles, strict=True)},
    }


def write_dataset(
    table: pd.DataFrame,
    domains: pa.Table,
    out: Path,
    max_len: int,
    test_days: int = 1,
    val_days: int = 1,
    extra: dict | None = None,
    burn_in_days: int = 0,
) -> Path:
    """Split a training table by time and write the splits + manifest.json atomically; returns `out`.

    The one writer of a dataset dir, whether the table was built from logs or through Feast.
    """
    splits = split_by_time(table, test_days=test_days, val_days=val_days, burn_in_days=burn_in_days)
    schema = training_schema(table)
    spec = spec_manifest(domains.sort_by(C.DOMAIN), max_len)
    manifest = {
        **spec,
        "seq_fields": list(C.SEQ_FIELDS),
        "reserved_id": RESERVED_ID,
        "target_domains": [d for d, v in spec["domains"].items() if v[C.ROLE] == C.ROLE_TARGET],
        "columns": schema.names,
        "days": {k: impression_days(v) for k, v in splits.items()},
        "burn_in_days": burn_in_days,
        "rows": {k: len(v) for k, v in splits.items()},
        "label_rate": {k: (float(v[C.LABEL].mean()) if len(v) else None) for k, v in splits.items()},
        **(extra or {}),
    }
    with io.atomic_dir(out, kind=io.DATASET_OUTPUT) as tmp:
        for name, frame in splits.items():
            tbl = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            # no pandas metadata: pd.read_parquet cannot parse the ArrowDtype names it would record
            pq.write_table(tbl.replace_schema_metadata(None), tmp / f"{name}.parquet")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Path(out)


def build_dataset(
    logs: Path,
    out: Path,
    max_len: int = DEFAULT_MAX_LEN,
    test_days: int = 1,
    val_days: int = 1,
    base_logs: Path | None = None,
    burn_in_days: int = 0,
    resolution: str = RESOLUTION_DAY,
    engine: str = LOCAL,
) -> Path:
    """Write out/{train,validation,test}.parquet and out/manifest.json atomically; returns `out`."""
    logs = Path(logs)
    domains = read_domains(logs, Path(base_logs) if base_logs is not None else None)
    train_end = training_window_end(logs, domains, test_days, val_days)
    table = build_training_table(
        logs, max_len=max_len, base_logs=base_logs, train_end=train_end, resolution=resolution, engine=engine
    )
    return write_dataset(table, domains, out, max_len, test_days, val_days, burn_in_days=burn_in_days,
                         extra={"sequence_resolution": resolution})


__all__ = [
    "DEFAULT_MAX_LEN",
    "SPLITS",
    "build_dataset",
    "build_training_table",
    "impression_days",
    "read_domains",
    "sequence_columns",
    "split_by_time",
    "training_schema",
    "training_window_end",
    "write_dataset",
]
