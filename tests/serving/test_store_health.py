"""The served Bento when its online store breaks: fail fast at start, 503 with a reason when locked."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dacdr.processes import free_port
from tests.serving.conftest import Served, serving_env

FAIL_FAST_TIMEOUT_S = 180


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_broken_online_store_fails_fast_with_one_line(served: Served, tmp_path: Path, damage: str) -> None:
    """`bentoml serve` on a missing/corrupt online store exits non-zero with one line; no empty db appears."""
    from features.store import data_dir

    feast = tmp_path / "feast"
    shutil.copytree(served.feast, feast)
    db = data_dir(feast) / "online_store.db"
    if damage == "missing":
        db.unlink()
    else:
        db.write_bytes(b"\x00garbage, not SQLite\x00" * 256)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", served.bento_tag, "--host", "127.0.0.1",
         "--port", str(free_port())],
        env=serving_env(served.home, feast),
        capture_output=True,
        text=True,
        timeout=FAIL_FAST_TIMEOUT_S,  # the old behaviour restarted the worker forever: this would expire
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    lines = [ln for ln in output.splitlines() if "dacdr: cannot serve" in ln]
    assert len(lines) == 1, output[-3000:]
    assert str(db) in lines[0]
    assert ("does not exist" if damage == "missing" else "is unreadable") in lines[0]
    assert "Traceback" not in output, output[-3000:]
    assert db.exists() == (damage == "corrupt"), "the check must not create an empty store"
    assert time.monotonic() - t0 < FAIL_FAST_TIMEOUT_S


def test_locked_store_is_quick_503_and_not_ready(served: Served) -> None:
    """While another connection holds the store exclusively: fast 503s naming the lock, /readyz 503."""
    from features.store import data_dir

    user_items = {"user_id": 1, "item_ids": [1, 2, 3]}
    holder = sqlite3.connect(data_dir(served.feast) / "online_store.db", isolation_level=None)
    with httpx.Client(base_url=served.url, timeout=30) as client:
        holder.execute("BEGIN EXCLUSIVE")
        try:
            for path, body in (("/rank", user_items), ("/rank_batch", {"queries": [user_items]})):
                t0 = time.perf_counter()
                resp = client.post(path, json=body)
                assert resp.status_code == 503, resp.text
                assert time.perf_counter() - t0 < 3.0, "a locked store must not stall a request for seconds"
                assert "locked" in resp.json()["error"], resp.text
            assert client.get("/readyz").status_code == 503
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.get("/readyz").status_code == 200
        assert client.post("/rank", json=user_items).status_code == 200
