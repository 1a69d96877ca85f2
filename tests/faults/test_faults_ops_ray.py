"""A local Ray started by dacdr: 127.0.0.1 only, and sized to the Ray Train workers or refused at once."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dacdr.cli import app
from dacdr.engine import ray_installed
from tests.conftest import RAY_CPUS
from tests.model.synth import write_synth_dataset

ROOT = Path(__file__).resolve().parents[2]
# `dacdr train --engine ray --workers 2` on one CPU of budget: Ray start, two torch workers, one step
TRAIN_TIMEOUT_S = 300


def _listening(procs: list) -> list[tuple[str, str]]:
    """(process name, listening IP) of every TCP socket the processes listen on."""
    import psutil

    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found += [(name, c.laddr.ip) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def _is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or the IPv4-mapped ::ffff:127.x an IPv6 socket reports."""
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_local_ray_listens_on_loopback_only(ray_session: str) -> None:
    """GCS, raylet, object manager, agents and workers of the suite's local Ray listen on 127.0.0.1 only:
    no 0.0.0.0, no ::, no external address."""
    import psutil

    if os.environ.get("RAY_ADDRESS", "").strip():
        pytest.skip("$RAY_ADDRESS names a cluster: no local Ray was started")
    procs = psutil.Process().children(recursive=True)  # gcs_server and raylet are ours; the rest theirs
    sockets = _listening(procs)
    names = {name for name, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets
    exposed = [(name, ip) for name, ip in sockets if not _is_loopback(ip)]
    assert exposed == [], f"listening beyond 127.0.0.1: {exposed}"


@pytest.mark.timeout(120)  # without the check, Ray Train waits for the CPUs forever
def test_more_workers_than_cpus_is_refused_in_seconds(ray_session: str, tmp_path: Path) -> None:
    """A Ray cluster smaller than --workers: one `error:` line naming --workers, exit 2, in seconds
    (Ray Train would wait for the CPUs forever)."""
    data = tmp_path / "ds"
    data.mkdir()
    (data / "manifest.json").write_text("{}")  # refused before any data is read
    workers = RAY_CPUS + 1
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["train", "--engine", "ray", "--workers", str(workers), "--data", str(data),
                                   "--out", str(tmp_path / "run"), "--device", "cpu"])
    took = time.perf_counter() - t0
    assert res.exit_code == 2, res.output + repr(res.exception)
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"error: --workers {workers}: ") and f"has {RAY_CPUS} CPU(s)" in last
    assert "Traceback" not in res.output
    assert took < 30
    assert not (tmp_path / "run").exists()  # nothing written for a refused run


def test_train_on_ray_with_a_one_thread_budget_sizes_the_local_ray(tmp_path: Path) -> None:
    """`dacdr train --engine ray --workers 2` with DACDR_THREADS=1 (a 2-core machine's default) starts a
    local Ray with a CPU per worker and finishes, instead of waiting forever for the second CPU."""
    if not ray_installed():  # not importorskip: this process must not import ray before init_ray
        pytest.skip("ray is not installed")
    data = write_synth_dataset(tmp_path / "ds", seed=0, n_train=400, n_eval=200, max_len=4)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(DACDR_THREADS="1", PYTHONPATH=str(ROOT), RAY_TMPDIR="/tmp")
    cmd = [sys.executable, "-m", "dacdr.cli", "train", "--engine", "ray", "--workers", "2",
           "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1",
           "--max-batches", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: a hung run is killed with its Ray
    try:
        out, err = proc.communicate(timeout=TRAIN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"still waiting after {TRAIN_TIMEOUT_S}s: the local Ray is too small for the workers")
    assert proc.returncode == 0, out + err
    assert "training on 2 Ray Train worker(s)" in out and "best epoch" in out
