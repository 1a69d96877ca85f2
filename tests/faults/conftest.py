"""Fault battery fixtures: copies of the serving store to break, a writer killed mid-transaction,
a served Bento over a copy, and a redis-server this module can kill and restart on the same port.

The tiny run, its Bento and the SQLite store come from tests/serving's session fixtures.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from bento.launch import start_bento
from dacdr.processes import stop_group
from tests.serving.conftest import (  # noqa: F401  # session fixtures shared with the serving tests
    Served,
    served,
    serving_domain,
    serving_env,
    serving_feast,
)

EXIT_WITHIN_S = 120  # a restart loop never exits: the test would fail here
# a writer that dirties every page of the packed view with a 2-page cache, so SQLite spills them to
# the database file (after saving the originals in its journal), then waits to be killed
KILLED_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 2")
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE dacdr_user_packed SET value = zeroblob(length(value))")
print("dirty", flush=True)
sys.stdin.read()
"""


HEAL_S = 15.0  # readiness is probed on request; a fault must show (and heal) well within this


def until(check: Callable[[], bool], timeout: float = HEAL_S) -> float:
    """Seconds until `check()` holds (polled every 0.2 s); fails the test after `timeout`."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, f"not within {timeout}s"
        time.sleep(0.2)
    return time.monotonic() - t0


def assert_exits_with_one_line(bento: str, env: dict[str, str], log: Path) -> str:
    """Start `bentoml serve`; it must exit, print one `dacdr: cannot serve` line, free the port."""
    url, proc = start_bento(bento, env, log)
    t0 = time.monotonic()
    try:
        proc.wait(timeout=EXIT_WITHIN_S)
    except Exception:
        stop_group(proc)
        raise AssertionError(f"still running after {EXIT_WITHIN_S}s:\n{log.read_text()[-3000:]}") from None
    elapsed = time.monotonic() - t0
    output = log.read_text()
    lines = [ln for ln in output.splitlines() if "dacdr: cannot serve" in ln]
    assert len(lines) == 1, output[-3000:]
    assert proc.returncode == 1, output[-3000:]
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the port is still open"
    print(f"exited {proc.returncode} after {elapsed:.1f}s: {lines[0]}")
    return lines[0]


def copy_store(feast: Path, dest: Path) -> Path:
    """A copy of a Feast working directory (the registry is relative: the copy uses its own)."""
    shutil.copytree(feast, dest)
    return dest


def online_db(feast: Path) -> Path:
    """The SQLite online store file of a working directory."""
    from features.store import data_dir

    return data_dir(feast) / "online_store.db"


def leave_hot_journal(db: Path) -> Path:
    """Kill -9 a writer in the middle of a transaction on `db`; returns the journal it left."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "dirty"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    journal = db.with_name(db.name + "-journal")
    assert journal.is_file() and journal.stat().st_size > 0, "the killed writer left no journal"
    return journal


def packed_rows(db: Path) -> int:
    """Rows of the packed view in a SQLite online store (read-write open: rolls a hot journal back)."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=rw", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM dacdr_user_packed").fetchone()[0]
    finally:
        conn.close()


@dataclass(frozen=True)
class Probe:
    """A warm user and candidate items of the tiny store, and a client of one server."""

    url: str
    user_id: int
    item_ids: list[int]

    def rank(self, timeout: float = 10) -> httpx.Response:
        """POST /rank for the warm user."""
        return httpx.post(
            f"{self.url}/rank", json={"user_id": self.user_id, "item_ids": self.item_ids}, timeout=timeout
        )

    def ready(self) -> int:
        """/readyz's status code."""
        return httpx.get(f"{self.url}/readyz", timeout=10).status_code

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled metric on /metrics (None when absent)."""
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None


def warm_user_and_items(feast: Path) -> tuple[int, list[int]]:
    """A user with a packed sequence in the store's snapshot, and five known items."""
    from features.store import data_dir

    users = pq.read_table(data_dir(feast) / "user_packed.parquet", columns=["user_id"]).column(0)
    items = pq.read_table(data_dir(feast) / "items.parquet", columns=["item_id"]).column(0)
    return int(users[0].as_py()), [int(i) for i in items.slice(0, 5).to_pylist()]


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """The redis-server binary; skips without one (fails on CI, which installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but redis-server is not installed")
        pytest.skip("redis-server is not installed; apt-get install redis-server")
    return binary


@dataclass
class RedisProcess:
    """A redis-server on a fixed loopback port, no persistence: a restart comes back empty."""

    binary: str
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Its redis:// url."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        import redis

        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL it (an outage; its data is gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_server(redis_binary: str) -> Iterator[RedisProcess]:
    """A redis-server this module may kill and restart on the same port."""
    from dacdr.processes import free_port

    server = RedisProcess(redis_binary, free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()
