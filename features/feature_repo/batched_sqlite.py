"""Feast's SQLite online store with batched writes (same tables, same reads, one executemany per batch).

Feast 0.67's SqliteOnlineStore runs one INSERT per (entity, feature); for 25 array features a row
that is 25 statements. This subclass sends a whole batch in one executemany inside one transaction.
Selected in feature_store.yaml by `type: features.feature_repo.batched_sqlite.BatchedSqliteOnlineStore`
(Feast's documented plug-in mechanism for online stores); anything it does not special-case
(vector search, value_num columns) goes to Feast's own implementation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from itertools import repeat
from typing import Any

from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.utils import to_naive_utc
from pydantic import StrictInt, StrictStr

from features.feature_repo.serialized import SerializedBatch

STORE_TYPE = "features.feature_repo.batched_sqlite.BatchedSqliteOnlineStore"


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Config of the batched SQLite online store (same options as Feast's sqlite store)."""

    type: StrictStr = STORE_TYPE  # type: ignore[assignment]
    # how long a statement waits for another connection's lock before "database is locked";
    # None keeps sqlite3's 5 s (writers want to wait); the server sets a short one so a locked
    # store answers 503 quickly instead of stalling every request
    busy_timeout_ms: StrictInt | None = None


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    """SqliteOnlineStore whose online_write_batch is one executemany per call."""

    def _get_conn(self, config: RepoConfig) -> sqlite3.Connection:
        """Feast's connection, with the configured busy timeout applied when it is opened."""
        fresh = self._conn is None
        conn = super()._get_conn(config)
        timeout = getattr(config.online_store, "busy_timeout_ms", None)
        if fresh and timeout is not None:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        return conn

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert every (entity, feature) of `data` in one transaction with one executemany."""
        store_config = config.online_store
        if store_config.vector_enabled or getattr(store_config, "enable_openai_compatible_store", False):
            super().online_write_batch(config, table, data, progress)
            return
        conn = self._get_conn(config)
        sql = self._upsert_sql(config, table)
        version = config.entity_key_serialization_version
        rows = []
        for entity_key, values, timestamp, created_ts in data:
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            ts = to_naive_utc(timestamp)
            created = to_naive_utc(created_ts) if created_ts is not None else None
            for feature_name, val in values.items():
                rows.append(
                    (
                        key,
                        feature_name,
                        val.SerializeToString(),
                        extract_text_and_num(val, False)[0],
                        ts,
                        created,
                    )
                )
        with conn:
            conn.executemany(sql, rows)
        if progress:
            progress(len(data))

    @staticmethod
    def _upsert_sql(config: RepoConfig, table: FeatureView) -> str:
        """The upsert of one (entity, feature) row into the view's table (Feast's columns)."""
        name = _quote_id(
            _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        )
        return (
            f"INSERT INTO {name} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts;"
        )

    def write_serialized(self, config: RepoConfig, table: FeatureView, batch: SerializedBatch) -> None:
        """Upsert an already serialized batch (features.feature_repo.serialized) in one transaction."""
        conn = self._get_conn(config)
        sql = self._upsert_sql(config, table)
        none = [None] * len(batch.keys)
        with conn:
            for name, values in batch.values.items():
                texts = batch.texts[name] or none
                names = repeat(name, len(none))
                rows = zip(batch.keys, names, values, texts, batch.event_ts, none, strict=True)
                conn.executemany(sql, rows)
