"""Feast's Redis online store, plus writes of already serialized batches in large pipelines.

Same keys, hash fields and values as Feast's RedisOnlineStore (reads are Feast's own): the key is
the serialized entity key + project, each feature is the field murmur3("<view>:<feature>"), and
"_ts:<view>" holds the event time as a protobuf Timestamp. Selected in feature_store.yaml by
`type: features.feature_repo.pipelined_redis.PipelinedRedisOnlineStore`.

write_serialized overwrites without Feast's read-before-write timestamp check (one round trip
per batch instead of two): features.materialize.materialize writes each entity's latest row of a window
that starts where the previous one ended, so a write is never older than what it replaces.
"""

from __future__ import annotations

from datetime import UTC, datetime

from feast import FeatureView
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, _versioned_fv_name
from feast.repo_config import RepoConfig
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import StrictStr

from features.feature_repo.serialized import SerializedBatch

STORE_TYPE = "features.feature_repo.pipelined_redis.PipelinedRedisOnlineStore"
PIPELINE_ROWS = 5_000  # entities per pipeline round trip: bounds the client's buffer


class PipelinedRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Config of the pipelined Redis store (Feast's redis options; only the type differs)."""

    type: StrictStr = STORE_TYPE  # type: ignore[assignment]


class PipelinedRedisOnlineStore(RedisOnlineStore):
    """RedisOnlineStore with write_serialized: HSETs of pre-serialized values, pipelined."""

    def write_serialized(self, config: RepoConfig, table: FeatureView, batch: SerializedBatch) -> None:
        """HSET every entity's features and timestamp, PIPELINE_ROWS entities per round trip."""
        store_config = config.online_store
        client = self._get_client(store_config)
        view = _versioned_fv_name(table, config)
        ts_field = f"_ts:{view}".encode()
        fields = [(_mmh3(f"{view}:{name}"), vals) for name, vals in batch.values.items()]
        project = config.project.encode()
        stamps: dict[datetime, bytes] = {}
        n = len(batch.keys)
        for lo in range(0, n, PIPELINE_ROWS):
            with client.pipeline(transaction=False) as pipe:
                for i in range(lo, min(lo + PIPELINE_ROWS, n)):
                    ts = batch.event_ts[i]
                    stamp = stamps.get(ts)
                    if stamp is None:
                        proto = Timestamp()
                        proto.FromDatetime(ts.replace(tzinfo=UTC))
                        stamp = stamps[ts] = proto.SerializeToString()
                    mapping = {ts_field: stamp}
                    for key, vals in fields:
                        mapping[key] = vals[i]
                    pipe.hset(batch.keys[i] + project, mapping=mapping)
                    if store_config.key_ttl_seconds:
                        pipe.expire(batch.keys[i] + project, store_config.key_ttl_seconds)
                pipe.execute()

