"""A worker whose start fails after the start-up check passed (corrupt data pages under an intact
schema, a damaged checkpoint): the server exits with one line instead of restarting it forever
with its port open."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.faults.conftest import assert_exits_with_one_line, copy_store, online_db
from tests.serving.conftest import Served, serving_env


def damage_pages(db: Path) -> None:
    """Overwrite every page after the first (which holds the schema) with garbage."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    data[page:] = b"\x5a" * (len(data) - page)
    db.write_bytes(bytes(data))


def damage_checkpoints(home: Path) -> None:
    """Replace every stored model's checkpoint.pt with bytes that are no checkpoint."""
    found = list((home / "models").rglob("checkpoint.pt"))
    assert found, f"no checkpoint under {home / 'models'}"
    for ckpt in found:
        ckpt.write_bytes(b"not a checkpoint\n" * 64)


@pytest.mark.parametrize("fault", ["corrupt_pages", "bad_checkpoint"])
def test_worker_that_cannot_start_stops_the_server(served: Served, tmp_path: Path, fault: str) -> None:
    """The start-up check passes, the worker's __init__ fails: one line, the server gone."""
    from bento.config import workers_env
    from features.store import check_online_store

    feast = copy_store(served.feast, tmp_path / "feast")
    home = served.home
    if fault == "corrupt_pages":
        damage_pages(online_db(feast))
        check_online_store(feast)  # the schema is intact: only the worker's reads can tell
    else:
        home = tmp_path / "home"
        shutil.copytree(served.home, home, ignore=shutil.ignore_patterns("*.log"))
        damage_checkpoints(home)
    env = workers_env(serving_env(home, feast), 1)
    line = assert_exits_with_one_line(served.bento_tag, env, tmp_path / "serve.log")
    assert "worker start failed" in line
