"""Serving hardening without a server: event_time range, online-store checks, the HTTP guard, log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
EDGES_IN_RANGE = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00-14:00"]


@pytest.mark.parametrize("when", OUT_OF_RANGE)
def test_event_time_outside_utc_range_is_a_field_error(when: str) -> None:
    """An offset that pushes the instant out of years 1-9999 in UTC is a validation error on event_time."""
    from pydantic import ValidationError

    from bento.ranker import Query
    from bento.schema import RankRequest

    with pytest.raises(ValidationError) as info:
        RankRequest.model_validate({"user_id": 1, "item_ids": [1], "event_time": when})
    assert [e["loc"] for e in info.value.errors()] == [("event_time",)]
    import datetime as dt

    with pytest.raises(ValueError, match="event_time"):
        Query.of(1, [1], dt.datetime.fromisoformat(when))


@pytest.mark.parametrize("when", EDGES_IN_RANGE)
def test_event_time_edges_in_range_become_utc(when: str) -> None:
    """The extreme instants that exist in UTC are accepted and converted to UTC."""
    import datetime as dt

    from bento.schema import RankRequest

    req = RankRequest.model_validate({"user_id": 1, "item_ids": [1], "event_time": when})
    assert req.event_time is not None and req.event_time.utcoffset() == dt.timedelta(0)


# ---------------------------------------------------------------------------------------------
# online store checks (no Feast involved: the check must run before Feast touches the file)
# ---------------------------------------------------------------------------------------------


BATCHED = "features.feature_repo.batched_sqlite.BatchedSqliteOnlineStore"


def _repo(tmp_path: Path, online: str = BATCHED) -> Path:
    """A workdir whose feature_store.yaml points at data/online_store.db (nothing else)."""
    repo = tmp_path / "work" / "feature_repo"
    (repo / "data").mkdir(parents=True)
    extra = "  connection_string: localhost:6379\n" if online == "redis" else "  path: data/online_store.db\n"
    (repo / "feature_store.yaml").write_text(f"project: dacdr\nonline_store:\n  type: {online}\n{extra}")
    return tmp_path / "work"


def _materialized(path: Path) -> None:
    """An online store file holding every table the service reads."""
    from features.store import online_tables

    conn = sqlite3.connect(path)
    for table in online_tables():
        conn.execute(f'CREATE TABLE "{table}" (entity_key BLOB, feature_name TEXT, value BLOB)')
    conn.commit()
    conn.close()


def test_missing_online_store_is_named_and_not_created(tmp_path: Path) -> None:
    """A missing store file: one line naming the file and what to run; the file is not created."""
    from features.store import FeatureStoreError, check_online_store, data_dir

    work = _repo(tmp_path)
    with pytest.raises(FeatureStoreError, match="online_store.db does not exist; run `dacdr feat") as info:
        check_online_store(work)
    assert "\n" not in str(info.value)
    assert not (data_dir(work) / "online_store.db").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a database at all" * 100, "is unreadable"), (b"", "lacks table"), (None, "lacks table")],
    ids=["corrupt", "zero-bytes", "no-tables"],
)
def test_corrupt_or_empty_online_store_is_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    """A corrupt file, a 0-byte file and a database without Feast's tables all fail in one line."""
    from features.store import FeatureStoreError, check_online_store, data_dir

    work = _repo(tmp_path)
    path = data_dir(work) / "online_store.db"
    if content is None:
        sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.commit()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(FeatureStoreError, match=message):
        check_online_store(work)
    assert path.read_bytes() == before, "the check must not modify the store"


def test_locked_online_store_is_named_quickly(tmp_path: Path) -> None:
    """A store another connection holds exclusively is reported as locked within the short timeout."""
    from features.store import FeatureStoreError, check_online_store, data_dir

    work = _repo(tmp_path)
    path = data_dir(work) / "online_store.db"
    _materialized(path)
    assert check_online_store(work) == path
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.perf_counter()
        with pytest.raises(FeatureStoreError, match="locked"):
            check_online_store(work, timeout_ms=100)
        assert time.perf_counter() - t0 < 2.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert check_online_store(work) == path


def test_redis_store_is_not_checked_as_a_file(tmp_path: Path) -> None:
    """A Redis-backed repo has no file to check."""
    from features.store import check_online_store

    assert check_online_store(_repo(tmp_path, "redis")) is None


def test_busy_timeout_reaches_the_feast_connection(tmp_path: Path) -> None:
    """The batched SQLite store applies busy_timeout_ms when it opens its connection."""
    from types import SimpleNamespace

    from features.feature_repo.batched_sqlite import BatchedSqliteOnlineStore, BatchedSqliteOnlineStoreConfig

    online = BatchedSqliteOnlineStoreConfig(path=str(tmp_path / "o.db"), busy_timeout_ms=123)
    config = SimpleNamespace(online_store=online, repo_path=tmp_path)
    conn = BatchedSqliteOnlineStore()._get_conn(config)  # type: ignore[arg-type]
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 123


# ---------------------------------------------------------------------------------------------
# RequestGuard (ASGI) driven directly
# ---------------------------------------------------------------------------------------------


def _drive(app: Any, path: str, chunks: list[bytes], declare_length: bool = True) -> tuple[int, bytes]:
    """Send one POST through an ASGI app; returns (status, body)."""
    headers = [(b"content-type", b"application/json")]
    if declare_length:
        headers.append((b"content-length", str(sum(map(len, chunks))).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        """The request's chunks, then a disconnect."""
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        """Collect what the app answers."""
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


class _Echo:
    """An ASGI app answering with the byte count it read (or a fixed status and body)."""

    def __init__(self, status: int = 200, body: bytes | None = None) -> None:
        """Answer `status` with `body` (default: the request body's length)."""
        self.status, self.body, self.calls = status, body, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Read the whole body, then answer."""
        self.calls += 1
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            if not message.get("more_body", False):
                break
        body = self.body if self.body is not None else str(len(data)).encode()
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_guard_refuses_large_bodies_with_413(declare_length: bool) -> None:
    """Over the limit: 413 naming the limit, the service never sees the request; under it: untouched."""
    from bento.config import ENV_MAX_BODY_BYTES
    from bento.guard import RequestGuard

    app = _Echo()
    guard = RequestGuard(app, max_body_bytes=1000)
    status, body = _drive(guard, "/rank", [b"x" * 600, b"y" * 600], declare_length)
    assert status == 413 and ENV_MAX_BODY_BYTES in json.loads(body)["error"]
    assert json.loads(body)["detail"][0]["loc"] == ["body"]
    assert app.calls == 0
    assert _drive(guard, "/rank_batch", [b"x" * 500, b"y" * 500], declare_length) == (200, b"1000")
    assert _drive(guard, "/docs.json", [b"x" * 5000], declare_length) == (200, b"5000"), "only API routes"


def test_guard_puts_the_store_reason_into_503() -> None:
    """BentoML's generic 503 body becomes the store's reason; other 503s and 200s pass unchanged."""
    from bento.guard import RequestGuard
    from bento.health import STORE_HEALTH

    generic = b'{"error":"An unexpected error has occurred, please check the server log."}'
    STORE_HEALTH.reason = "online store unavailable: OperationalError: database is locked"
    try:
        status, body = _drive(RequestGuard(_Echo(503, generic)), "/rank", [b"{}"])
        assert status == 503 and json.loads(body) == {"error": STORE_HEALTH.reason}
        assert _drive(RequestGuard(_Echo(503, b"shed")), "/rank", [b"{}"]) == (503, b"shed")
    finally:
        STORE_HEALTH.reason = None
    assert _drive(RequestGuard(_Echo(503, generic)), "/rank", [b"{}"]) == (503, generic)


# ---------------------------------------------------------------------------------------------
# log lines
# ---------------------------------------------------------------------------------------------


def _record(exc: BaseException) -> logging.LogRecord:
    """The record BentoML's log_exception makes for `exc` on POST /rank."""
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(
        "bentoml._internal.server.http_app", logging.ERROR, __file__, 1, "Exception on %s [%s]",
        ("/rank", "POST"), info,
    )


def test_client_errors_are_one_info_line_without_the_input() -> None:
    """A validation error: INFO, one line, field and error type, no traceback, no input value."""
    from pydantic import ValidationError

    from bento.guard import ClientErrorLogFilter
    from bento.health import StoreUnavailable
    from bento.schema import RankRequest

    secret = "SECRET-INPUT-7f3a"
    try:
        RankRequest.model_validate({"user_id": secret, "item_ids": [1]})
    except ValidationError as exc:
        record = _record(exc)
    assert ClientErrorLogFilter().filter(record)
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert line.startswith("INFO /rank [POST]: 400") and "user_id: int_type" in line
    assert "\n" not in line and secret not in line and record.exc_info is None

    record = _record(StoreUnavailable("online store unavailable: database is locked"))
    ClientErrorLogFilter().filter(record)
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING /rank [POST]: 503 (online store unavailable: database is locked)"

    record = _record(RuntimeError("a real bug"))
    ClientErrorLogFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None, "server faults keep the traceback"


def test_upstream_model_fields_warning_is_filtered_only_there() -> None:
    """The per-request pydantic deprecation from BentoML's app module is filtered; others still show."""
    import warnings

    from bento.guard import install_log_hygiene

    msg = "Accessing the 'model_fields' attribute on the instance is deprecated. Instead, ..."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        install_log_hygiene()
        warnings.warn_explicit(msg, DeprecationWarning, "app.py", 794, module="_bentoml_impl.server.app")
        warnings.warn_explicit(msg, DeprecationWarning, "mine.py", 1, module="models.mine")
    assert [w.filename for w in caught] == ["mine.py"]
