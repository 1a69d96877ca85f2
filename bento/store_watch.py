"""The online store as one worker reads it: the file it has open, Redis reachability, user rows.

Feast's SQLite store keeps one connection per process: after `rm online_store.db; cp good.db
online_store.db` it would go on reading the deleted file, and after a truncate-then-restore it
may keep a broken view of the file. StoreWatch compares the file's identity (device, inode,
mtime, size) before every read and reopens when it changed (forgetting the domain row memoised
from the old file), and drops the connection after a
failed read, so the next request opens the file that is there now. For Redis it bounds every
call (socket timeouts, no retry with backoff) so an outage costs each request well under a
second. `problem` is what /readyz reports: the store unreadable, Redis down, or none of a sample
of users materialized earlier present (the store lost its rows).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bento.health import store_errors

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

# every Redis call of a serving worker: connect and read give up after this, and are not retried
REDIS_TIMEOUT_S = 0.25


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """(device, inode, mtime ns, size) of a file, None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


@dataclass
class StoreWatch:
    """One worker's view of its online store (see the module docstring)."""

    store: FeatureStore
    workdir: Path
    sqlite_file: Path | None  # None: Redis
    users_view: FeatureView | None = None  # the view whose rows every request reads (user_packed)
    sample: dict[str, list] | None = None  # join keys of rows the last materialization loaded
    opened: tuple[int, int, int, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    reopened: int = 0
    present: int | None = None  # sampled users found by the last probe (None: not sampled)

    @classmethod
    def open(cls, store: FeatureStore, workdir: Path, users_view: str) -> StoreWatch:
        """Watch `store`; sample the users its last materialization of `users_view` loaded."""
        from features import store as fs
        from features.online import sample_keys

        path = fs.online_store_file(workdir)
        view = store.get_feature_view(users_view)
        last = view.most_recent_end_time
        watch = cls(
            store=store,
            workdir=Path(workdir),
            sqlite_file=path,
            users_view=view,
            sample=sample_keys(view, last) if last is not None else None,
            opened=file_identity(path) if path is not None else None,
        )
        if path is None:
            watch.bound_redis()
        return watch

    def online(self) -> Any:
        """Feast's online store object of this store (holds the connection or client)."""
        return self.store._get_provider().online_store

    def bound_redis(self) -> None:
        """Socket timeouts and no retries on the Redis client, so an outage fails each call fast.

        redis-py retries a failed call 3 times with exponential backoff (1 s base) by default:
        measured 3.6-10 s per request during an outage.
        """
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = self.online()._get_client(self.store.config.online_store)
        kwargs = client.connection_pool.connection_kwargs
        kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = REDIS_TIMEOUT_S
        client.set_retry(Retry(NoBackoff(), 0))
        client.connection_pool.disconnect()  # connections made with the old settings

    def check(self) -> None:
        """Before a read (hold `lock`): reopen when the SQLite file is not the one opened."""
        if self.sqlite_file is None:
            return
        now = file_identity(self.sqlite_file)
        if now is None:  # Feast's sqlite3.connect would create an empty file in its place
            self.reset()
            self.opened = None
            raise sqlite3.OperationalError(f"online store {self.sqlite_file} does not exist")
        if now != self.opened:
            from features.online import forget

            self.reset()
            forget(self.store)  # the domain row memoised from the old file (up to a minute)
            self.opened = now

    def reset(self) -> None:
        """Drop the SQLite connection (the next read opens the file that is there now)."""
        online = self.online()
        conn = getattr(online, "_conn", None)
        if conn is not None:
            online._conn = None
            conn.close()
            self.reopened += 1

    def problem(self, busy_timeout_ms: int) -> str | None:
        """Why the store cannot serve right now (None: it can): unreadable, Redis down, or lost rows."""
        from features.online import rows_present
        from features.store import FeatureStoreError, check_online_store

        try:
            if self.sqlite_file is not None:
                check_online_store(self.workdir, timeout_ms=busy_timeout_ms)
            else:
                self.online()._get_client(self.store.config.online_store).ping()
            if self.sample is None or self.users_view is None:
                return None
            with self.lock:
                self.check()
                found = self.present = rows_present(self.store, self.users_view, self.sample)
        except FeatureStoreError as exc:
            return str(exc)
        except store_errors() as exc:
            with self.lock:
                self.reset()
            return f"{type(exc).__name__}: {exc}"
        if found == 0:
            n = len(next(iter(self.sample.values())))
            return (
                f"none of {n} sampled users has a row of {self.users_view.name} (the store lost its "
                f"data?); run `dacdr features materialize --workdir {self.workdir}`"
            )
        return None
