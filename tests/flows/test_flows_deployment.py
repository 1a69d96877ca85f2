"""prefect.yaml against a REAL local Prefect server: `prefect deploy --all`, a process worker, and
`onboard_domain` run as a deployment (with its parameters) to completion on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dacdr.processes import free_port, stop_group
from features import contract as C
from features import io
from flows.common import Layout

from .conftest import TINY_EPOCHS, PipelineRun

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
NEW_DOMAIN = "beauty_second"


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a long-running command in its own process group, output to `log`."""
    sink = log.open("wb")
    return subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group we started (the server and worker fork children)."""
    stop_group(proc)


def prefect(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a `prefect` CLI command; fail the test with its output when it fails."""
    done = subprocess.run(
        [PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    detail = f"prefect {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, detail
    return done


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free port with PREFECT_HOME in a tmp dir; yields the client env."""
    import httpx

    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
    )
    cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = start(cmd, env, home / "server.log")
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "prefect server did not become healthy in 240 s"
            time.sleep(1)
        yield env
    finally:
        stop(server)


def second_onboarding_zone(layout: Layout, out: Path) -> tuple[Path, dict[str, str]]:
    """The simulator's onboarding zone re-labelled as a brand-new domain; its feature values apart.

    The zone gets no domains table: the deployment run receives the feature values as a parameter.
    """
    onboard = next((layout.logs / "_onboard").iterdir())
    row = io.read_table(onboard, C.DOMAINS).to_pylist()[0]
    features = {k: v for k, v in row.items() if k not in C.columns(C.DOMAINS)}
    for part in C.list_partitions(onboard, C.IMPRESSIONS):
        tbl = pq.read_table(part.path)
        i = tbl.schema.get_field_index(C.DOMAIN)
        names = pc.replace_substring(tbl.column(C.DOMAIN), row[C.DOMAIN], NEW_DOMAIN)
        renamed = tbl.set_column(i, C.DOMAIN, names)
        target = out / part.path.relative_to(onboard)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(renamed, target)
    return out, {k: str(v) for k, v in features.items()}


def test_onboard_domain_runs_as_a_deployment(
    tiny_pipeline: PipelineRun, prefect_server: dict[str, str], tmp_path: Path
) -> None:
    """deploy --all, a `cpu` process worker, `prefect deployment run onboard_domain/onboard-domain`."""
    import bentoml

    from bento.rollout import bentoml_home, production_model

    layout = Layout.of(tiny_pipeline.workdir)
    env = {
        **prefect_server,
        "DACDR_WORKDIR": str(layout.root),
        "DACDR_LOGS": str(layout.logs),
        "BENTOML_HOME": str(bentoml_home()),  # the store the tiny pipeline packaged into
    }
    for pool in ("cpu", "gpu"):
        prefect(["work-pool", "create", pool, "--type", "process"], env, 120)
    deployed = prefect(["--no-prompt", "deploy", "--all"], env, 300)
    listed = prefect(["deployment", "ls"], env, 120).stdout
    for name in ("daily/daily", "train/train", "train-step/train-gpu", "onboard_domain/onboard-domain"):
        assert name in listed, f"{name} not deployed:\n{deployed.stdout}\n{listed}"
    zone, features = second_onboarding_zone(layout, tmp_path / "zone")
    cmd = [PREFECT, "worker", "start", "--pool", "cpu", "--type", "process"]
    worker = start(cmd, env, tmp_path / "worker.log")
    try:
        params = ["--param", f"domain={NEW_DOMAIN}", "--param", f"landing_zone={zone}"]
        params += ["--param", f"features={json.dumps(features)}", "--param", "device=cpu"]
        params += ["--param", f"epochs={TINY_EPOCHS}"]
        cmd = [PREFECT, "deployment", "run", "onboard_domain/onboard-domain", *params]
        run = subprocess.run(
            [*cmd, "--watch", "--watch-timeout", "420"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=480, check=False,
        )
    finally:
        stop(worker)
    detail = f"{run.stdout}\n{run.stderr}\nworker log:\n{(tmp_path / 'worker.log').read_text()[-4000:]}"
    assert run.returncode == 0 and "Completed" in run.stdout, detail
    # the new domain's Bento exists; its model is in production exactly when the offline gate promoted it
    # (a first model must beat popularity on the holdout by > 2 s.e.; the registry's history says which)
    bento = bentoml.bentos.get(f"dacdr-{NEW_DOMAIN}:latest")
    from bento.registry import read_registry

    tag = bento.info.labels["model"]
    decided = [h for h in read_registry(NEW_DOMAIN)["history"] if h.get("candidate") == tag]
    assert decided, "no rollout decision recorded for the onboarded model"
    promoted = decided[-1]["action"] == "promote"
    assert production_model(NEW_DOMAIN) == (tag if promoted else None)
    lake = layout.onboard(NEW_DOMAIN) / "lake"
    accepted = io.read_table(lake / "curated", C.IMPRESSIONS)
    assert set(accepted.column(C.DOMAIN).to_pylist()) == {NEW_DOMAIN}
    landed = sum(pq.read_metadata(p.path).num_rows for p in C.list_partitions(zone, C.IMPRESSIONS))
    q_files = (lake / "quarantine" / C.IMPRESSIONS).rglob("*.parquet")
    quarantined = sum(pq.read_metadata(p).num_rows for p in q_files)
    assert accepted.num_rows > 0 and accepted.num_rows + quarantined == landed
