"""Serving fixtures: a Feast store from tiny_logs, the tiny run packaged as a Bento, served over HTTP.

Everything that touches the BentoML store runs in subprocesses with their own BENTOML_HOME (a
tmp dir): BentoML fixes its home once per process, so the test process itself never uses it.
The server starts once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bento.launch import served_bento

STARTUP_TIMEOUT_S = 240


@dataclass(frozen=True)
class Served:
    """A running `bentoml serve` of one domain's Bento."""

    url: str
    domain: str
    model_tag: str
    bento_tag: str
    home: Path
    feast: Path
    run: Path
    log: Path
    pid: int
    log_dir: Path  # the served-ranking log (DACDR_SERVED_LOG_DIR)

    def env(self) -> dict[str, str]:
        """Environment for subprocesses that use the same BentoML home and feature store."""
        return serving_env(self.home, self.feast)


def serving_env(home: Path, feast: Path) -> dict[str, str]:
    """os.environ plus this session's BentoML home and feature store (no telemetry)."""
    from bento.config import ENV_FEAST_REPO

    return {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        ENV_FEAST_REPO: str(feast),
    }


def run_cli(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run `dacdr ARGS` in a subprocess and return the completed process (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "dacdr.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    """The JSON object a CLI command printed last; fails with its stderr when it did not succeed."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def serving_feast(tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Feast working directory built, applied and materialized from tiny_logs."""
    from features import materialize
    from features import store as fs

    work = tmp_path_factory.mktemp("serving_feast")
    fs.build(tiny_logs, work)
    fs.apply(work)
    materialize.materialize(work)
    return work


@pytest.fixture(scope="session")
def serving_domain(tiny_run: Path) -> str:
    """The first target domain the tiny model was trained for."""
    from models.checkpoint import load_checkpoint

    _, spec, meta = load_checkpoint(tiny_run / "checkpoint.pt", "cpu")
    roles = (meta.get("manifest") or {}).get("domains") or {}
    targets = sorted(d for d in spec.domain_tasks if (roles.get(d) or {}).get("role", "target") == "target")
    assert targets, f"tiny model has no target domain: {spec.domain_tasks}"
    return targets[0]


SERVE_WORKERS = 2


@pytest.fixture(scope="session")
def served(
    tiny_run: Path, serving_feast: Path, serving_domain: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`dacdr package` the tiny run, then `bentoml serve` its Bento on a free loopback port."""
    from bento.config import workers_env

    home = tmp_path_factory.mktemp("bentoml_home")
    # two workers, as a production server runs: every HTTP test then also covers requests landing
    # on either process (test_http.py checks the count)
    env = workers_env(serving_env(home, serving_feast), SERVE_WORKERS)
    env["DACDR_SERVED_LOG_DIR"] = str(home / "served_log")
    tags = last_json(
        run_cli(
            ["package", str(tiny_run), "--domain", serving_domain, "--feast-repo", str(serving_feast)], env
        )
    )
    with serve_bento(tags["bento"], env, home / "serve.log") as server:
        yield Served(
            url=server.url,
            domain=serving_domain,
            model_tag=tags["model"],
            bento_tag=tags["bento"],
            home=home,
            feast=serving_feast,
            run=tiny_run,
            log=server.log,
            pid=server.proc.pid,
            log_dir=home / "served_log",
        )


@dataclass(frozen=True)
class Server:
    """A `bentoml serve` process started by serve_bento."""

    url: str
    proc: subprocess.Popen
    log: Path


@contextmanager
def serve_bento(
    bento: str, env: dict[str, str], log: Path, timeout: float = STARTUP_TIMEOUT_S
) -> Iterator[Server]:
    """A served Bento, ready (/readyz 200) before it is yielded, stopped afterwards."""
    with served_bento(bento, env, log, timeout) as (url, proc):
        yield Server(url=url, proc=proc, log=log)
