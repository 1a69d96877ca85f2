"""The main job (`dacdr pipeline`, = `make run`): simulate -> ingest x days -> features -> train ->
package -> rollout -> onboard the held-out domain -> one real ranking request -> summary.

Runs every stage as a Prefect flow on whatever API is configured (by default Prefect's ephemeral
API with its SQLite database under <workdir>/prefect, so the UI can show the runs afterwards).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, task

from features import contract as C
from flows.common import Layout, use_bentoml_home
from flows.featurize import features
from flows.ingest import ingest
from flows.onboard import onboard_domain
from flows.package import package, rollout
from flows.train import train


@dataclass
class StageClock:
    """Prints each stage as it starts and ends, and keeps the wall times for the summary."""

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage; prints `[t] name ...` then `[t] name done in Xs`."""
        t0 = time.perf_counter()
        print(f"[{t0 - self.started:7.1f}s] {name} ...", flush=True)
        yield
        dt = time.perf_counter() - t0
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        print(f"[{time.perf_counter() - self.started:7.1f}s] {name} done in {dt:.1f}s", flush=True)


@task
def simulate_task(preset: str, seed: int, logs: str) -> dict[str, Any]:
    """Write the preset's landing zone (+ _truth/, _onboard/); returns its summary and manifest."""
    from features.simulator import read_manifest, simulate, summary_dict

    summary = summary_dict(simulate(preset, seed=seed, out=Path(logs)))
    return {**summary, "manifest": read_manifest(Path(logs))}


@task
def oracle_task(logs: str, domains: list[str]) -> dict[str, float]:
    """The simulator's oracle AUC (true click probabilities) on each domain's test day."""
    from features.simulator import oracle_auc

    return oracle_auc(Path(logs), domains)


def smoke_query(curated_or_zone: Path, domain: str, day: str, max_items: int = 20) -> dict[str, Any]:
    """A real ranking request: the first test-day request of `domain`, with its impressed items."""
    import pyarrow.compute as pc

    from features import io

    imp = io.read_table(curated_or_zone, C.IMPRESSIONS, day)
    imp = imp.filter(pc.equal(imp.column(C.DOMAIN), domain))
    if imp.num_rows == 0:
        raise ValueError(f"{curated_or_zone}: no {domain} impressions on {day} to build a request from")
    first = imp.column(C.REQUEST_ID)[0].as_py()
    req = imp.filter(pc.equal(imp.column(C.REQUEST_ID), first))
    items = req.column(C.ITEM_ID).to_pylist()[:max_items]
    return {C.USER_ID: int(req.column(C.USER_ID)[0].as_py()), "item_ids": [int(i) for i in items]}


@task
def smoke_request_task(workdir: str, domain: str, query: dict[str, Any]) -> dict[str, Any]:
    """Start `domain`'s Bento on a free loopback port, POST /rank, return the answer, stop it."""
    import httpx

    from bento.packaging import serve_domain

    layout = Layout.of(workdir)
    with serve_domain(domain, feast_repo=layout.feast) as base_url:
        response = httpx.post(f"{base_url}/rank", json=query, timeout=60)
        response.raise_for_status()
        return response.json()


def _totals(reports: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows read/accepted/quarantined per table over every validated day."""
    out: dict[str, dict[str, int]] = {}
    for rep in reports:
        for table, stats in rep["tables"].items():
            acc = out.setdefault(table, {"read": 0, "accepted": 0, "quarantined": 0})
            for key in acc:
                acc[key] += int(stats[key])
    return out


@flow(name="pipeline")
def pipeline(
    preset: str = "demo",
    workdir: str = ".work",
    seed: int = 0,
    device: str = "auto",
    gpu_deployment: str | None = None,
    smoke: bool = True,
) -> dict[str, Any]:
    """The main job end to end; returns the summary (also printed by `dacdr pipeline`)."""
    layout = Layout.of(workdir)
    use_bentoml_home(layout)
    clock = StageClock()
    root = str(layout.root)
    with clock.stage("simulate"):
        sim = simulate_task(preset, seed, str(layout.logs))
    days = sim["days"]
    reports = []
    with clock.stage(f"ingest + validate {len(days)} days"):
        for dt in days:
            reports.append(ingest(str(layout.logs), dt, root))
    with clock.stage("features (snapshots, feast apply, materialize)"):
        end = (date.fromisoformat(days[-1]) + timedelta(days=1)).isoformat()
        features(root, end=end)
    with clock.stage("train base + fine-tune per domain"):
        metrics = train(root, gpu_deployment=gpu_deployment, device=device, seed=seed)
    domains = sorted(metrics)
    with clock.stage("package Bentos"):
        tags = package(root, domains)
    with clock.stage("rollout"):
        decisions = rollout(root, tags, {d: float(m["auc"]) for d, m in metrics.items()})
    onboard_name = sim["manifest"]["onboard"]
    zone = layout.logs / "_onboard" / onboard_name
    with clock.stage(f"onboard {onboard_name}"):
        onboarded = onboard_domain(onboard_name, str(zone), root, seed=seed, device=device)
    metrics[onboard_name] = onboarded["metrics"]
    tags.append({k: onboarded[k] for k in ("domain", "model", "bento")})
    decisions.append(onboarded["rollout"])
    oracle = oracle_task(str(layout.logs), [*domains, onboard_name])
    answer = None
    if smoke:
        with clock.stage(f"smoke request to dacdr-{domains[0]}"):
            query = smoke_query(layout.curated, domains[0], days[-1])
            answer = {"request": query, "response": smoke_request_task(root, domains[0], query)}
    return {
        "workdir": root,
        "preset": preset,
        "rows": _totals(reports),
        "auc": {d: float(m["auc"]) for d, m in metrics.items()},
        "oracle_auc": oracle,
        "bentos": tags,
        "rollout": decisions,
        "smoke": answer,
        "stage_seconds": clock.seconds,
        "total_seconds": time.perf_counter() - clock.started,
    }
