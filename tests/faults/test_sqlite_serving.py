"""A served Bento while its SQLite online store is replaced, truncated and restored, emptied and
reloaded, or left with a killed writer's journal: /rank reads the file that is there, /readyz
tells the truth, and each fault heals without a restart."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Probe, copy_store, leave_hot_journal, online_db, until, warm_user_and_items
from tests.serving.conftest import Served, serve_bento, serving_env


@pytest.fixture(scope="module")
def store_server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Probe, Path]]:
    """One worker serving the tiny Bento over a copy of the store this module may break."""
    from bento.config import workers_env

    work = tmp_path_factory.mktemp("faults_sqlite")
    feast = copy_store(served.feast, work / "feast")
    shutil.copy2(online_db(feast), work / "good.db")
    env = workers_env(serving_env(served.home, feast), 1)
    with serve_bento(served.bento_tag, env, work / "serve.log") as server:
        user, items = warm_user_and_items(feast)
        yield Probe(server.url, user, items), work


def cold(probe: Probe) -> bool | None:
    """The warm user's cold_start flag (None when /rank is not 200)."""
    resp = probe.rank()
    return resp.json()["cold_start"] if resp.status_code == 200 else None


def restore(probe: Probe, db: Path, good: Path) -> None:
    """Put the good store back (a new file) and wait until the server serves it."""
    db.unlink(missing_ok=True)
    shutil.copy2(good, db)
    until(lambda: probe.ready() == 200 and cold(probe) is False)


def test_replaced_store_file_is_read(store_server: tuple[Probe, Path]) -> None:
    """`rm online_store.db; cp other.db online_store.db` while serving: the next /rank reads the
    new file (not the deleted one it had open), both ways."""
    probe, work = store_server
    db = online_db(work / "feast")
    assert cold(probe) is False
    emptied = work / "emptied.db"
    shutil.copy2(work / "good.db", emptied)
    with sqlite3.connect(emptied) as conn:
        conn.execute("DELETE FROM dacdr_user_packed")
    conn.close()
    db.unlink()
    shutil.copy2(emptied, db)
    assert cold(probe) is True, "the server still reads the deleted file"
    restore(probe, db, work / "good.db")


def test_truncated_then_restored_store_heals_without_restart(store_server: tuple[Probe, Path]) -> None:
    """Truncated to 0 bytes: /rank and /readyz 503; the same file written back: both 200 again."""
    probe, work = store_server
    db = online_db(work / "feast")
    good = (work / "good.db").read_bytes()
    os.truncate(db, 0)
    assert probe.rank().status_code == 503
    until(lambda: probe.ready() == 503)
    with open(db, "r+b") as fh:  # the same inode, as `cp good.db online_store.db` does
        fh.write(good)
    healed = until(lambda: cold(probe) is False)
    assert probe.ready() == 200
    print(f"truncate-then-restore healed {healed:.2f}s after the restore")


def test_emptied_store_is_reported_and_materialize_restores_users(
    store_server: tuple[Probe, Path],
) -> None:
    """The store file lost (`features apply` makes it again, empty): /readyz 503 naming the lost
    users and the gauge at 0, then `dacdr features materialize` brings every user back."""
    probe, work = store_server
    feast = work / "feast"
    db = online_db(feast)
    env = {**os.environ}
    db.unlink()
    cli = [sys.executable, "-m", "dacdr.cli", "features"]
    subprocess.run([*cli, "apply", "--workdir", str(feast)], env=env, check=True, capture_output=True)
    until(lambda: probe.ready() == 503)
    assert cold(probe) is True  # answered, but the readiness and the metric say why
    assert probe.metric("dacdr_online_sampled_users_present") == 0
    assert probe.metric("dacdr_online_store_ready") == 0
    t0 = time.monotonic()
    out = subprocess.run(
        [*cli, "materialize", "--workdir", str(feast)], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert "user_packed: 0 rows" not in out, out
    until(lambda: probe.ready() == 200 and cold(probe) is False)
    print(f"materialize + ready again in {time.monotonic() - t0:.1f}s:\n{out}")
    assert (probe.metric("dacdr_online_sampled_users_present") or 0) > 0


def test_killed_writer_journal_leaves_readiness_true(store_server: tuple[Probe, Path]) -> None:
    """A writer killed mid-transaction: /readyz is 200 again by itself (no /rank needed), and the
    scores are those of before the transaction."""
    probe, work = store_server
    before = probe.rank().json()["ranked"]
    leave_hot_journal(online_db(work / "feast"))
    until(lambda: probe.ready() == 200)
    assert probe.rank().json()["ranked"] == before
