"""Start `bentoml serve` on loopback in its own process group, wait until ready, stop the whole group.

One launcher for everything that runs a Bento as a child: the pipeline's smoke request and A/B, the
benchmarks and the tests. The server's output goes to a log file (a pipe nobody drains could stall it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dacdr.processes import free_port, stop_group

STARTUP_TIMEOUT_S = 180.0


def start_bento(bento: str, env: dict[str, str], log: Path, port: int | None = None
                ) -> tuple[str, subprocess.Popen]:
    """`bentoml serve BENTO` on 127.0.0.1 (a free port unless given), not waited for: (url, process)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", bento, "--host", "127.0.0.1", "--port", str(port)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:  # the child holds its own copy of the descriptor
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    return f"http://127.0.0.1:{port}", proc


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Return once GET url/readyz answers 200; RuntimeError (with the log's tail) if the server exits
    first, TimeoutError after `timeout` s."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"bentoml serve exited with {proc.returncode} (log {log}):\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout:.0f}s (log {log})")
        time.sleep(0.5)


@contextmanager
def served_bento(bento: str, env: dict[str, str], log: Path, timeout: float = STARTUP_TIMEOUT_S
                 ) -> Iterator[tuple[str, subprocess.Popen]]:
    """A served Bento, ready before it is yielded as (url, process), its process group stopped after."""
    url, proc = start_bento(bento, env, log)
    try:
        wait_ready(url, proc, log, timeout)
        yield url, proc
    finally:
        stop_group(proc)
