"""Online reads: everything the model needs about users, items and a domain, one Feast call each."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa

from features import contract as C
from features import store as fs

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureService, FeatureStore, FeatureView

T = TypeVar("T")
# rows per view sampled to tell a loaded online store from one that lost its rows
SAMPLE_ROWS = 16


def online_features(
    store_or_workdir: FeatureStore | Path | str, user_ids: list[int], domain: str
) -> pd.DataFrame:
    """Everything the model needs about `user_ids` in target `domain`, in ONE call through dacdr_v1.

    One row per user id (in the given order): user_id, domain, then the service's features in its
    order: the sequence columns (nulls for unknown users normalised to empty lists, as
    features.sequences does), the activity columns (nullable Int64) and the domain view's columns
    (role, task, d_<feature>; null when the domain is unknown).
    """
    from features.feature_repo.services import DACDR_V1
    from features.sequences import normalize_sequences

    store = fs.as_store(store_or_workdir)
    C.check_domain_name(domain)
    ids = [int(u) for u in user_ids]
    service = _cached(store, DACDR_V1, lambda: store.get_feature_service(DACDR_V1, allow_cache=True))
    response = store.get_online_features(
        features=service,
        entity_rows={C.USER_ID: ids, C.DOMAIN: [domain] * len(ids)},
    )
    tbl = normalize_sequences(_typed_table(response.to_arrow(), [C.USER_ID, C.DOMAIN], service))
    return tbl.to_pandas(types_mapper=fs.pandas_type)


def item_features(store_or_workdir: FeatureStore | Path | str, item_ids: list[int]) -> pd.DataFrame:
    """Side info (category_id, brand_id, shop_id as Int64, price) of candidate items, one row per id."""
    from features.feature_repo.views import ITEM_SIDE_INFO

    store = fs.as_store(store_or_workdir)
    ids = [int(i) for i in item_ids]
    view = _cached(
        store, ITEM_SIDE_INFO, lambda: store.get_feature_view(ITEM_SIDE_INFO, allow_registry_cache=True)
    )
    response = store.get_online_features(
        features=[f"{ITEM_SIDE_INFO}:{f.name}" for f in view.features],
        entity_rows={C.ITEM_ID: ids},
    )
    return _typed_table(response.to_arrow(), [C.ITEM_ID], view).to_pandas(types_mapper=fs.pandas_type)


def packed_sequences(store_or_workdir: FeatureStore | Path | str, user_ids: list[int]) -> list[bytes | None]:
    """Users' packed sequence blobs (features.packed) in one online read of the packed view (None: unseen)."""
    from features.feature_repo.views import PACKED_SEQUENCES, USER_PACKED

    store = fs.as_store(store_or_workdir)
    response = store.get_online_features(
        features=[f"{USER_PACKED}:{PACKED_SEQUENCES}"], entity_rows={C.USER_ID: [int(u) for u in user_ids]}
    )
    return response.to_dict()[PACKED_SEQUENCES]


def domain_values(store_or_workdir: FeatureStore | Path | str, domain: str) -> dict[str, str | None]:
    """A domain's row of the domain view (role, task, d_<feature>; all None for an unknown domain),
    read at most once per _OBJECT_TTL_S per store (a missing row on every call): it is a dimension
    row every request needs."""
    from features.feature_repo.views import DOMAIN_FEATURES

    store = fs.as_store(store_or_workdir)
    C.check_domain_name(domain)

    def read() -> dict[str, str | None]:
        """One online read of the domain's row."""
        view = store.get_feature_view(DOMAIN_FEATURES, allow_registry_cache=True)
        got = store.get_online_features(
            features=[f"{DOMAIN_FEATURES}:{f.name}" for f in view.features], entity_rows={C.DOMAIN: [domain]}
        ).to_dict()
        return {f.name: got[f.name][0] for f in view.features}

    key = f"{DOMAIN_FEATURES}/{domain}"
    values = _cached(store, key, read)
    if all(v is None for v in values.values()):
        # no row (a store emptied and not reloaded yet): ask again next time, or every request for
        # a minute after the recovery would be scored without the domain's features
        _OBJECT_CACHE.get(store, {}).pop(key, None)
    return values


def sample_keys(fv: FeatureView, end: datetime, k: int = SAMPLE_ROWS) -> dict[str, list] | None:
    """Join keys of up to `k` rows of `fv`'s parquet source stamped at or before `end` (rows a
    materialization up to `end` has loaded); None when the source is no parquet file or has none."""
    import duckdb
    from feast import FileSource

    from dacdr.threads import duckdb_threads

    source = fv.batch_source
    if not isinstance(source, FileSource) or not Path(source.path).exists():
        return None
    keys = [e.name for e in fv.entity_columns]
    cols = ", ".join('"' + k.replace('"', '""') + '"' for k in keys)
    ts = '"' + source.timestamp_field.replace('"', '""') + '"'
    con = duckdb.connect(config={"threads": duckdb_threads()})
    try:
        # no ORDER BY: the scan stops after k matching rows, so this stays fast on a large snapshot
        tbl = con.sql(
            f"SELECT {cols} FROM read_parquet($path) WHERE {ts}::TIMESTAMP <= $end LIMIT {int(k)}",
            params={"path": source.path, "end": fs.utc(end).replace(tzinfo=None)},
        ).to_arrow_table()
    finally:
        con.close()
    return tbl.to_pydict() if tbl.num_rows else None


def rows_present(store: FeatureStore, fv: FeatureView, keys: dict[str, list]) -> int:
    """How many of the entity rows `keys` have a row of `fv` in the online store (one online read).

    A row is there when its value is set or it carries its event time (a stored null): a missing
    row comes back NOT_FOUND from SQLite but PRESENT, empty and stamped 0 from Redis, so Feast's
    status alone cannot tell.
    """
    feature = fv.features[0].name
    response = store.get_online_features(features=[f"{fv.name}:{feature}"], entity_rows=keys)
    names = list(response.proto.metadata.feature_names.val)
    result = response.proto.results[names.index(feature)]
    return sum(
        ts.seconds != 0 or value.WhichOneof("val") is not None
        for value, ts in zip(result.values, result.event_timestamps, strict=True)
    )


# Registry objects per open store, refreshed after the registry's own cache ttl: parsing the
# service from the registry proto costs ~15 ms, ten times the online read of one user.
_OBJECT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_OBJECT_TTL_S = 60.0


def forget(store: FeatureStore) -> None:
    """Drop what is memoised for `store` (its online store file was replaced: read it afresh)."""
    _OBJECT_CACHE.pop(store, None)


def _cached(store: FeatureStore, name: str, load: Callable[[], T]) -> T:
    """`load()` memoised per (store, name) for _OBJECT_TTL_S seconds."""
    per_store = _OBJECT_CACHE.setdefault(store, {})
    hit = per_store.get(name)
    now = time.monotonic()
    if hit is None or now - hit[0] > _OBJECT_TTL_S:
        hit = (now, load())
        per_store[name] = hit
    return hit[1]


def _typed_table(tbl: pa.Table, keys: list[str], source: FeatureService | FeatureView) -> pa.Table:
    """Order an online response as keys + the service's/view's features, cast to their declared types.

    Feast's to_df() returns columns in no fixed order, turns int columns with nulls into float and
    an all-null column into the null type; ints come back as nullable Int64 here.
    """
    from feast import FeatureService

    if isinstance(source, FeatureService):
        fields = [f for p in source.feature_view_projections for f in p.features]
    else:
        fields = list(source.features)
    schema = pa.schema(
        [tbl.schema.field(k) for k in keys] + [pa.field(f.name, fs.ARROW_TYPES[str(f.dtype)]) for f in fields]
    )
    return tbl.select(schema.names).cast(schema)
