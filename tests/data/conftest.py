"""Feature-store fixtures: a Feast store built from the tiny logs, and a real redis-server on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dacdr.processes import free_port

REDIS_INSTALL_HINT = "redis-server is not installed; install it with `apt-get install redis-server`"


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    """Block until something accepts connections on 127.0.0.1:port; fail if `proc` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on port {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate a process we started and wait for it (kill if it lingers)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free localhost port (no persistence); skips (fails on CI) without one."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {REDIS_INSTALL_HINT}")
        pytest.skip(REDIS_INSTALL_HINT)
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def feast_workdir(tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite-online Feast store over the tiny logs, built/applied/materialized through the CLI."""
    from typer.testing import CliRunner

    from dacdr.cli import app

    workdir = tmp_path_factory.mktemp("feast") / "store"
    runner = CliRunner()
    for args in (
        ["features", "build", "--logs", str(tiny_logs), "--workdir", str(workdir)],
        ["features", "apply", "--workdir", str(workdir)],
        ["features", "materialize", "--workdir", str(workdir)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return workdir
