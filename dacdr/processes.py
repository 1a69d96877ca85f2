"""Child processes: a free loopback port; stopping a server started in its own session, workers too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def stop_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """Stop the process group `proc` leads (arbiter + workers): SIGTERM, then SIGKILL after `grace_s`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
