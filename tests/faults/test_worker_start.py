"""A worker whose start fails after the start-up check passed (corrupt data pages under an intact
schema, a damaged checkpoint): the server exits with one line instead of restarting it forever
with its port open."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.faults.conftest import copy_store, online_db
from tests.serving.conftest import Served, serving_env, start_bento, stop_bento

EXIT_WITHIN_S = 120  # a restart loop never exits: the test would fail here


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


def assert_exits_with_one_line(bento: str, env: dict[str, str], log: Path) -> str:
    """Start `bentoml serve`; it must exit, print one `dacdr: cannot serve` line, free the port."""
    url, proc = start_bento(bento, env, log)
    t0 = time.monotonic()
    try:
        proc.wait(timeout=EXIT_WITHIN_S)
    except Exception:
        stop_bento(proc)
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
