"""The main job (`dacdr pipeline`, = `make run`): simulate -> ingest x days -> features -> train ->
package -> rollout -> onboard the held-out domain -> one real ranking request -> summary.

Runs every stage as a Prefect flow on whatever API is configured (by default Prefect's ephemeral
API with its SQLite database under <workdir>/prefect, so the UI can show the runs afterwards).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
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
from flows.run_logs import STAGE_LOGGER, configure_run_logs
from flows.train import train


@dataclass(frozen=True)
class TrainBudget:
    """How much training the main job affords per preset (CPU-only machines set the pace)."""

    epochs: int
    batch_size: int
    finetune_batch_size: int
    max_batches: int | None  # cap on the base model's batches per epoch; None = full epochs


# the closing A/B of the main job: a short test on simulated traffic (the decision needs the horizon)
AB_DAYS = 2
AB_REQUESTS_PER_DAY = 300

PRESET_BUDGETS: dict[str, TrainBudget] = {
    # tiny (tests): a capped epoch; enough for the models to rank clearly better than chance
    "tiny": TrainBudget(epochs=1, batch_size=1024, finetune_batch_size=512, max_batches=24),
    # demo/bench: a capped base epoch keeps `make run` within minutes on 2 cores. demo: 500 steps of 1024
    # (the per-domain transfer term needs steps more than rows: 120 steps of 4096 left it half-learned)
    "demo": TrainBudget(epochs=1, batch_size=1024, finetune_batch_size=1024, max_batches=500),
    "bench": TrainBudget(epochs=1, batch_size=8192, finetune_batch_size=4096, max_batches=200),
}


@dataclass
class StageClock:
    """Prints each stage as it starts and ends, and keeps the wall times for the summary."""

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage; prints `[t] name ...` then `[t] name done in Xs`."""
        t0 = time.perf_counter()
        self._say(f"[{t0 - self.started:7.1f}s] {name} ...")
        yield
        dt = time.perf_counter() - t0
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self._say(f"[{time.perf_counter() - self.started:7.1f}s] {name} done in {dt:.1f}s")

    @staticmethod
    def _say(line: str) -> None:
        """Print a stage line and log it to the Prefect run (its logs in the UI)."""
        print(line, flush=True)
        logging.getLogger(STAGE_LOGGER).info(line)


@task
def simulate_task(preset: str, seed: int, logs: str) -> dict[str, Any]:
    """Write the preset's landing zone (+ _truth/, _onboard/); returns its summary and manifest."""
    from features.simulator import read_manifest, simulate, summary_dict

    summary = summary_dict(simulate(preset, seed=seed, out=Path(logs)))
    return {**summary, "manifest": read_manifest(Path(logs))}


@task
def oracle_task(logs: str, domains: list[str]) -> dict[str, float]:
    """The simulator's oracle AUC (true click probabilities) on each domain's test day."""
    from models.oracle import oracle_auc

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


@contextmanager
def serving(bento_tag: str, feast_repo: Path, log: Path, served_log: Path | None = None) -> Iterator[str]:
    """Run `bentoml serve <bento_tag>` on a free loopback port until the block ends; yields its URL."""
    import os

    from bento.launch import served_bento
    from bento.rollout import bentoml_home

    # the server must read the store this process wrote to (BentoML fixes its home on first use)
    env = {**os.environ, "DACDR_FEAST_REPO": str(feast_repo), "BENTOML_HOME": str(bentoml_home())}
    if served_log is not None:  # every answer logged (request id, arm, position, score)
        env["DACDR_SERVED_LOG_DIR"] = str(served_log)
    with served_bento(bento_tag, env, log) as (url, _):
        yield url


@task
def smoke_request_task(workdir: str, bento_tag: str, query: dict[str, Any]) -> dict[str, Any]:
    """Start a domain's Bento on a free loopback port, POST /rank, return the answer, stop it."""
    import httpx

    layout = Layout.of(workdir)
    log = layout.root / "serve" / f"{bento_tag.replace(':', '-')}.log"
    with serving(bento_tag, layout.feast, log) as url:
        response = httpx.post(f"{url}/rank", json=query, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"POST {url}/rank answered {response.status_code}: {response.text[:500]}")
        return response.json()


@task
def ab_task(workdir: str, tag: dict[str, str], decision: dict[str, Any], days: int, seed: int
            ) -> dict[str, Any]:
    """A short A/B test of the domain's new model against its previous production model (popularity on a
    first run), on simulated traffic against the live Bento; returns the report and the decision."""
    from bento.rollout import ab_control
    from flows.experiment import ab_experiment
    from flows.package import popularity_model_task

    layout = Layout.of(workdir)
    domain, candidate = tag["domain"], tag["model"]
    control = ab_control(decision, candidate) or popularity_model_task(workdir, domain, str(layout.dataset))
    served = layout.root / "served"
    log = layout.root / "serve" / f"ab-{domain}.log"
    with serving(tag["bento"], layout.feast, log, served_log=served) as url:
        result = ab_experiment(workdir, domain, candidate, services={domain: url}, days=days, seed=seed,
                               horizon_requests=days * AB_REQUESTS_PER_DAY // 2,  # per arm: half each
                               requests_per_day=AB_REQUESTS_PER_DAY, served_log=str(served), control=control)
    return {"domain": domain, "control": control, "candidate": candidate, **result}


def _totals(reports: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows read/accepted/quarantined per table: event tables summed over the days, dimension
    tables (re-validated whole every day) as of the last day."""
    out: dict[str, dict[str, int]] = {}
    for rep in reports:
        for table, stats in rep["tables"].items():
            if table not in C.EVENT_TABLES:
                out[table] = {key: 0 for key in ("read", "accepted", "quarantined")}
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
    epochs: int | None = None,
) -> dict[str, Any]:
    """The main job end to end; returns the summary (also printed by `dacdr pipeline`).

    Training follows the preset's TrainBudget; `epochs` overrides its epoch count.
    """
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    if preset not in PRESET_BUDGETS:
        raise ValueError(f"preset must be one of {sorted(PRESET_BUDGETS)}, got {preset!r}")
    budget = PRESET_BUDGETS[preset]
    epochs = epochs or budget.epochs
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
        metrics = train(
            root, gpu_deployment=gpu_deployment, device=device, seed=seed, epochs=epochs,
            batch_size=budget.batch_size, finetune_batch_size=budget.finetune_batch_size,
            max_batches=budget.max_batches,
        )
    domains = sorted(metrics)
    with clock.stage("package Bentos"):
        tags = package(root, domains)
    with clock.stage("rollout"):
        decisions = rollout(root, tags)
    onboard_name = sim["manifest"]["onboard"]
    zone = layout.logs / "_onboard" / onboard_name
    with clock.stage(f"onboard {onboard_name}"):
        onboarded = onboard_domain(onboard_name, str(zone), root, device=device, seed=seed, epochs=epochs)
    metrics[onboard_name] = onboarded["metrics"]
    tags.append({k: onboarded[k] for k in ("domain", "model", "bento")})
    decisions.append(onboarded["rollout"])
    oracle = oracle_task(str(layout.logs), [*domains, onboard_name])
    answer, ab = None, None
    if smoke:
        with clock.stage(f"smoke request to {tags[0]['bento']}"):
            query = smoke_query(layout.curated, tags[0]["domain"], days[-1])
            answer = {"request": query, "response": smoke_request_task(root, tags[0]["bento"], query)}
        with clock.stage(f"A/B {tags[0]['domain']}: new model vs control, {AB_DAYS} simulated days"):
            ab = ab_task(root, tags[0], decisions[0], AB_DAYS, seed)
    return {
        "workdir": root,
        "preset": preset,
        "rows": _totals(reports),
        "auc": {d: float(m["auc"]) for d, m in metrics.items()},
        "oracle_auc": oracle,
        "bentos": tags,
        "rollout": decisions,
        "smoke": answer,
        "ab": ab,
        "days": days,  # the simulated days (the A/B appends its own days to the zone after them)
        "budget": {**asdict(budget), "epochs": epochs},
        "stage_seconds": clock.seconds,
        "total_seconds": time.perf_counter() - clock.started,
    }
