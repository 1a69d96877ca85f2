"""A batch of feature rows in an online store's own bytes, written without building a proto per value.

features.materialize.materialize hands each batch of a view to the online store as a SerializedBatch when
the store has `write_serialized` (the batched SQLite and pipelined Redis stores here); the bytes
are exactly what Feast's online_write_batch would store (features.feature_repo.wire; tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from feast import FeatureView

from features.feature_repo import wire


@dataclass(frozen=True)
class SerializedBatch:
    """Rows of one feature view: serialized entity keys, per feature its values (and texts), times."""

    keys: list[bytes]
    values: dict[str, list[bytes]]
    texts: dict[str, list[str | None] | None]
    event_ts: list[datetime]  # naive UTC, as Feast's stores keep them


def serialize_batch(batch: pa.RecordBatch | pa.Table, fv: FeatureView, version: int) -> SerializedBatch:
    """Serialize a batch of `fv`'s rows (join key, features, the source's timestamp column)."""
    (key,) = fv.entity_columns  # every dacdr view has one join key
    keys = wire.entity_keys(_col(batch, key.name), key.name, str(key.dtype), version)
    values = {f.name: wire.value_column(_col(batch, f.name), str(f.dtype)) for f in fv.features}
    texts = {f.name: wire.value_texts(_col(batch, f.name), str(f.dtype)) for f in fv.features}
    ts = _col(batch, fv.batch_source.timestamp_field)
    if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
        ts = ts.cast(pa.timestamp(ts.type.unit, "UTC")).cast(pa.timestamp(ts.type.unit))
    return SerializedBatch(keys=keys, values=values, texts=texts, event_ts=ts.to_pylist())


def _col(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    """One column as a single arrow array."""
    col = batch.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
