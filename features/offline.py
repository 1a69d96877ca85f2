"""Offline reads: point-in-time correct features from the duckdb offline store, and the training
table built through Feast (same columns, order and dtypes as features.dataset)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from features import contract as C
from features import store as fs

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureService, FeatureStore, FeatureView


_ROW = "__dacdr_row"  # entity-frame row number: Feast returns rows in no fixed order
_DAY = "__dacdr_day"


def historical_features(store_or_workdir: FeatureStore | Path | str, rows: pd.DataFrame) -> pd.DataFrame:
    """Append dacdr_v1's features (+ item side info when rows have item_id) as of each row's event_time.

    `rows` needs user_id, domain and event_time (item_id optional). Every row comes back, in
    order, index kept: rows with no snapshot at or before their time get empty sequence lists (as
    features.sequences.normalize_sequences makes them) and null statistics. Point-in-time joins
    run in the duckdb offline store (get_historical_features through dacdr_v1, then the item view)
    over the DISTINCT (keys, UTC day) of the rows: every feature row is stamped at a UTC midnight,
    so `feature_time <= t` equals `feature_time <= midnight(t)`; the answer per row is exact and
    the join is many times smaller.
    """
    import pandas as pd

    from features.feature_repo.services import DACDR_V1
    from features.feature_repo.views import ITEM_SIDE_INFO
    from features.sequences import normalize_sequences

    store = fs.as_store(store_or_workdir)
    need = [C.USER_ID, C.DOMAIN, C.EVENT_TIME]
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise C.ContractError(f"rows lack column(s) {missing} needed for historical features")
    day = _utc_series(rows[C.EVENT_TIME]).dt.floor("D").reset_index(drop=True)
    service = store.get_feature_service(DACDR_V1, allow_cache=True)
    parts = [_pit_features(store, rows, day, [C.USER_ID, C.DOMAIN], service)]
    if C.ITEM_ID in rows.columns:
        parts.append(_pit_features(store, rows, day, [C.ITEM_ID], store.get_feature_view(ITEM_SIDE_INFO)))
    names = [n for part in parts for n in part.column_names]
    clash = [n for n in names if n in rows.columns]
    if clash:
        raise C.ContractError(f"rows already have feature column(s) {clash}")
    feats = pa.Table.from_arrays([c for part in parts for c in part.columns], names=names)
    out = normalize_sequences(feats).to_pandas(types_mapper=fs.pandas_type)
    out.index = rows.index
    return pd.concat([rows, out], axis=1)


def _pit_features(
    store: FeatureStore,
    rows: pd.DataFrame,
    day: pd.Series,
    keys: list[str],
    source: FeatureService | FeatureView,
) -> pa.Table:
    """Point-in-time features of `source` for each row (in order), joined on the distinct (keys, day)."""
    from feast import FeatureService
    from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL as TS

    if isinstance(source, FeatureService):
        fields = [(p.name, f) for p in source.feature_view_projections for f in p.features]
    else:
        fields = [(source.name, f) for f in source.features]
    keyed = rows[keys].reset_index(drop=True).copy()
    keyed[_DAY] = day
    uniq = keyed.drop_duplicates(ignore_index=True)
    uniq = uniq.assign(**{_ROW: range(len(uniq))})
    entity = uniq.rename(columns={_DAY: TS})
    refs = [f"{v}:{f.name}" for v, f in fields]
    got = store.get_historical_features(entity_df=entity, features=refs).to_arrow()
    if got.num_rows != len(uniq):
        raise fs.FeatureStoreError(
            f"historical retrieval returned {got.num_rows} rows for {len(uniq)} entity rows"
        )
    # position of each input row's (keys, day) in the retrieval result sorted by _ROW
    pos = keyed.merge(uniq, on=[*keys, _DAY], how="left", sort=False)[_ROW].to_numpy()
    schema = pa.schema([pa.field(f.name, fs.ARROW_TYPES[str(f.dtype)]) for _, f in fields])
    return got.sort_by(_ROW).select(schema.names).cast(schema).take(pa.array(pos))


def _utc_series(col: pd.Series) -> pd.Series:
    """A timestamp column as tz-aware UTC (naive means UTC, by contract)."""
    import pandas as pd

    col = pd.to_datetime(col)
    return col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")


def historical_training_table(
    workdir: Path | str,
    logs: Path | str,
    max_len: int | None = None,
    base_logs: Path | str | None = None,
    train_end: str | None = None,
) -> pd.DataFrame:
    """features.dataset.build_training_table's table, with every feature read through Feast.

    The impression rows and is_cold come from `logs` exactly as the direct builder makes them;
    item side info, d_<feature> domain features and the seq_* columns come from one point-in-time
    retrieval (historical_features) over the duckdb offline store. Same columns, order, dtypes.
    `max_len` must match the store's build (default: the store's).
    """
    from features.sequences import RESERVED_ID, sequence_columns

    built = fs.built_max_len(workdir)
    if max_len is not None and max_len != built:
        raise fs.FeatureStoreError(
            f"the store was built with max_len={built}, asked for {max_len}; rebuild it"
        )
    rows, feats = _training_rows(Path(logs), None if base_logs is None else Path(base_logs), train_end)
    got = historical_features(workdir, rows)
    domain_cols = [C.domain_feature_col(f) for f in feats]
    absent = [c for c in domain_cols if c not in got.columns]
    if absent:
        raise fs.FeatureStoreError(f"the store's domain view lacks {absent}; rebuild it from these logs")
    unknown = got.loc[got[C.ROLE].isna(), C.DOMAIN].unique().tolist()
    if unknown:
        raise fs.FeatureStoreError(
            f"domain(s) {sorted(unknown)} are not in the store's domain view; rebuild it"
        )
    for c in C.SIDE_INFO:
        got[c] = got[c].fillna(RESERVED_ID).astype("int64")
    for c in domain_cols:
        got[c] = got[c].astype(object)
    order = [*C.columns(C.IMPRESSIONS), *C.SIDE_INFO, C.IS_COLD, *domain_cols, *sequence_columns()]
    return got[order]


def _training_rows(
    logs: Path, base_logs: Path | None, train_end: str | None
) -> tuple[pd.DataFrame, list[str]]:
    """Target-domain impression rows with is_cold (the direct builder's selection) and domain features."""
    from features.dataset import target_impressions

    imps, domains = target_impressions(logs, base_logs, train_end)
    return imps.to_pandas(), C.domain_feature_columns(domains.column_names)


def write_training_dataset(
    workdir: Path | str,
    logs: Path | str,
    out: Path | str,
    test_days: int = 1,
    val_days: int = 1,
    base_logs: Path | str | None = None,
) -> Path:
    """features.dataset.build_dataset's output (splits + manifest.json), the table built through Feast."""
    from features.dataset import read_domains, training_window_end, write_dataset

    logs = Path(logs)
    base = None if base_logs is None else Path(base_logs)
    domains = read_domains(logs, base)
    train_end = training_window_end(logs, domains, test_days, val_days)
    table = historical_training_table(workdir, logs, base_logs=base, train_end=train_end)
    return write_dataset(table, domains, Path(out), fs.built_max_len(workdir), test_days, val_days,
                         extra={"source": "feast"})
