"""Online A/B of real models: popularity (control), DNN-single, category_transfer, DACDR: arms of one Bento.

From one main-job workdir (`dacdr pipeline --preset P --no-smoke`, run here unless WORKDIR already
holds it) the domain's `popularity`, `dnn_single` (trained on the domain's rows only) and
`category_transfer` are trained with the offline tables' shared budget (10 epochs, early stopping;
docs/baselines.md) and saved to the model store beside the pipeline's fine-tuned DACDR (the main
job's budget); the domain's Bento serves them as four live arms of one experiment
(`bento.registry.start_arms`: a quarter of the users each, popularity the control), and
the simulator's users (`features.simulator.traffic.simulate_online` over `HttpService`, the code
of `dacdr simulate-online`) send D days x R requests per traffic seed. Per arm: requests, CTR, CTR
and GMV/1000-requests lift over popularity with user-clustered 95 % intervals (bento.ab), per seed
and pooled over the seeds, the arm's holdout AUC (the domain's test rows, as the rollout gate scores
them) and its served AUC (within-request expected AUC against the true p_click on what it served).
Prints one JSON object and a Markdown table (about 10 min from an empty workdir on 2 idle cores):

    .venv/bin/python benchmarks/online_models.py --workdir /tmp/online_models --days 7 --requests 8000
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import typer

REPO = Path(__file__).resolve().parents[1]
CONTROL_MODEL = "popularity"
CANDIDATES = ("dnn_single", "category_transfer", "dacdr")  # arm names; dacdr is the pipeline's model
SPLITS = ("train", "validation", "test")
ORACLE = "oracle"  # the true p_click's own within-request AUC on the served requests (the ceiling)
app = typer.Typer(add_completion=False)


def fail(message: str) -> NoReturn:
    """One `error: ...` line on stderr, exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def prepare(workdir: Path, preset: str, seed: int) -> dict[str, Any]:
    """The main job's summary: `dacdr pipeline --no-smoke` into `workdir` unless it already ran there."""
    summary = workdir / "pipeline_summary.json"
    if not summary.is_file():
        cmd = [sys.executable, "-m", "dacdr.cli", "pipeline", "--preset", preset, "--workdir", str(workdir),
               "--seed", str(seed), "--no-smoke"]
        subprocess.run(cmd, check=True, env={**os.environ, "PREFECT_HOME": str(workdir / "prefect")})
    out = json.loads(summary.read_text())
    if out["preset"] != preset:
        fail(f"{workdir} holds a {out['preset']!r} main job, not {preset!r}")
    return out


def domain_dataset(dataset: Path, domain: str, out: Path) -> Path:
    """A dataset of one domain's rows of every split (dnn_single learns one model per domain)."""
    if (out / "manifest.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        tbl = pq.read_table(dataset / f"{split}.parquet")
        pq.write_table(tbl.filter(pc.equal(tbl.column("domain"), domain)), out / f"{split}.parquet")
    shutil.copy2(dataset / "manifest.json", out / "manifest.json")  # last: it marks the folder complete
    return out


def stored_model(name: str, data: Path, run: Path, domain: str, seed: int) -> str:
    """Train zoo model `name` on `data` into `run` (once) with the offline tables' shared budget, and save
    it as a `dacdr-<domain>` model (once)."""
    from bento.packaging import save_model
    from flows.package import stored_model_of
    from models.experiments.common import ExperimentConfig
    from models.run import train

    cfg = ExperimentConfig()  # 10 epochs of 1024, early stopping: what the offline tables give every model
    if not (run / "checkpoint.pt").is_file():
        train(data, run, model=name, device="cpu", seed=seed, epochs=cfg.epochs, batch_size=cfg.batch_size,
              lr=cfg.lr, patience=cfg.patience, embed_dim=cfg.embed_dim, progress=False)
    return stored_model_of(run, domain) or save_model(run, domain, dataset_dir=data)


def traffic_zone(logs: Path, out: Path) -> Path:
    """A landing zone whose online days follow the offline ones: the simulator manifest and the last
    offline impressions day (simulate_online appends after it), nothing else."""
    from features import contract as C
    from features.simulator.run import MANIFEST, TRUTH_DIR

    last = C.list_days(logs, C.IMPRESSIONS)[-1]
    (out / TRUTH_DIR).mkdir(parents=True)
    shutil.copy2(logs / TRUTH_DIR / MANIFEST, out / TRUTH_DIR / MANIFEST)
    shutil.copytree(C.partition_dir(logs, C.IMPRESSIONS, last), C.partition_dir(out, C.IMPRESSIONS, last))
    return out


def wait_for_arms(url: str, experiment_id: str, query: dict[str, Any], timeout: float = 120.0) -> None:
    """Until the service answers from the arms of `experiment_id` (it re-reads the registry within a
    second and loads every arm's model then); an answer from the previous experiment does not count."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.post(f"{url}/rank", json=query, timeout=60).json().get("experiment_id") == experiment_id:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not pick up experiment {experiment_id} in {timeout:g} s")


def joined_of(zone: Path, experiment_id: str) -> pa.Table:
    """The experiment's shown rows with their clicks, sorted by request and position."""
    from features.served import EXPERIMENT_ID, join_clicks, read_clicks, read_served
    from features.simulator.traffic import ONLINE_DIR

    served = read_served(zone / ONLINE_DIR)
    served = served.filter(pc.equal(served.column(EXPERIMENT_ID), experiment_id))
    return join_clicks(served, read_clicks(zone / ONLINE_DIR))


def poolable(joined: pa.Table, seed: int) -> pa.Table:
    """Request and user ids prefixed by the seed, so seeds can be pooled (each seed assigns users afresh:
    (seed, user) is the cluster)."""
    from features import contract as C

    req = pc.binary_join_element_wise(f"s{seed}-", joined.column(C.REQUEST_ID), "")
    users = pc.add(joined.column(C.USER_ID), seed * 10**12)
    joined = joined.set_column(joined.schema.get_field_index(C.REQUEST_ID), C.REQUEST_ID, req)
    return joined.set_column(joined.schema.get_field_index(C.USER_ID), C.USER_ID, users)


def served_auc(state: Any, domain: str, joined: pa.Table) -> dict[str, float]:
    """arm -> the noise-free AUC of its scores against the true p_click over pairs of candidates of the
    same request (how well it orders what it was given; `joined` is sorted by request and position)."""
    from features import contract as C
    from features.served import ARM, SCORE
    from features.simulator import Responder, click_probability

    users, items = joined.column(C.USER_ID).to_numpy(), joined.column(C.ITEM_ID).to_numpy()
    u, i = Responder(state, 0).indices(users, items)
    p_all, s_all = click_probability(state, domain, u, i), joined.column(SCORE).to_numpy()
    arms = joined.column(ARM).to_numpy(zero_copy_only=False).astype(str)
    requests = joined.column(C.REQUEST_ID).to_numpy(zero_copy_only=False)
    _, per_request = np.unique(requests, return_counts=True)
    k = int(per_request[0])
    if (per_request != k).any():
        raise ValueError("requests show different numbers of items; the within-request AUC needs one")
    out = {ORACLE: pair_auc(p_all.reshape(-1, k), p_all.reshape(-1, k))}  # the ceiling: true p_click's order
    for arm in np.unique(arms):
        m = arms == arm
        out[str(arm)] = pair_auc(p_all[m].reshape(-1, k), s_all[m].reshape(-1, k))
    return out


def pair_auc(p: np.ndarray, s: np.ndarray) -> float:
    """Expected AUC of scores s over pairs within each row (request) of true click probabilities p."""
    k = p.shape[1]
    pair = p[:, :, None] * (1 - p[:, None, :])  # P(i clicked, j not), i != j
    pair[:, np.arange(k), np.arange(k)] = 0.0
    above = (s[:, :, None] > s[:, None, :]) + 0.5 * (s[:, :, None] == s[:, None, :])
    return round(float((pair * above).sum() / pair.sum()), 4)


def summarise(report: Any) -> dict[str, dict[str, Any]]:
    """arm -> requests, users, CTR, GMV/1000 requests and the lifts [low, high] over the control."""
    out: dict[str, dict[str, Any]] = {}
    for a in report.arms:
        row: dict[str, Any] = {"model_tag": a.model_tag, "users": a.users, "requests": a.requests,
                               "impressions": a.impressions, "clicks": a.clicks, "ctr": round(a.ctr, 5),
                               "gmv_per_1000_requests": round(a.gmv_per_1000_requests, 1)}
        if a.arm != report.control:
            for metric, key in (("ctr", "ctr_lift"), ("gmv_per_1000_requests", "gmv_lift")):
                x = report.lift(a.arm, metric)
                row[key] = [rounded(x.lift), rounded(x.low), rounded(x.high)]
        out[a.arm] = row
    return out


def rounded(x: float) -> float | None:
    """x to 4 decimals; None when not finite (no purchase in an arm: no GMV lift)."""
    return round(x, 4) if math.isfinite(x) else None


def pct(x: list[float | None]) -> str:
    """`+3.5 % [-1.0, +8.2]` from [lift, low, high]; `n/a` when undefined."""
    if any(v is None for v in x):
        return "n/a"
    return f"{100 * x[0]:+.1f} % [{100 * x[1]:+.1f}, {100 * x[2]:+.1f}]"


def markdown(out: dict[str, Any]) -> str:
    """One row per arm: holdout and served AUC, requests, CTR, lifts per seed and pooled."""
    seeds = ", ".join(str(s["seed"]) for s in out["per_seed"])
    rows = [f"| arm | holdout AUC | served AUC | requests | CTR | CTR lift vs popularity, 95 % CI "
            f"(seeds {seeds}) | pooled CTR lift | GMV / 1000 requests lift (per seed) | pooled GMV lift |",
            "|---|---:|---:|---:|---:|---|---|---|---|"]
    for arm in (out["control"], *CANDIDATES):
        pooled = out["pooled"][arm]
        per_seed = [s["arms"][arm] for s in out["per_seed"]]
        ctr_seeds = "; ".join(pct(p["ctr_lift"]) for p in per_seed) if arm != out["control"] else "(control)"
        gmv_seeds = "; ".join(pct(p["gmv_lift"]) for p in per_seed) if arm != out["control"] else "(control)"
        name = f"{CONTROL_MODEL} (control)" if arm == out["control"] else arm
        ctr_pooled = pct(pooled["ctr_lift"]) if "ctr_lift" in pooled else "–"
        gmv_pooled = pct(pooled["gmv_lift"]) if "gmv_lift" in pooled else "–"
        auc = out["holdout_auc"][arm]
        rows.append(f"| {name} | {auc:.4f} | {pooled['served_auc']:.4f} | {pooled['requests']} | "
                    f"{pooled['ctr']:.4f} | {ctr_seeds} | "
                    f"{ctr_pooled} | {gmv_seeds} | {gmv_pooled} |")
    ceiling = out["oracle_served_auc"]
    rows.append(f"\n(served AUC: within-request expected AUC of the arm's scores against the true p_click on "
                f"the candidates it served, mean over seeds; the true p_click's own: {ceiling:.4f})")
    return "\n".join(rows)


@app.command()
def main(
    workdir: Path = typer.Option(Path("/tmp/online_models"), help="Main-job workdir (made here when empty)."),
    preset: str = typer.Option("tiny", help="Simulator preset of the main job: tiny, demo or bench."),
    domain: str = typer.Option("", help="Domain to test (default: the main job's first target domain)."),
    days: int = typer.Option(7, min=1, help="Simulated days of traffic per seed."),
    requests: int = typer.Option(2000, min=1, help="Requests per day."),
    seeds: int = typer.Option(3, min=1, help="Traffic seeds (first-seed, first-seed + 1, ...)."),
    first_seed: int = typer.Option(1000, help="First traffic seed."),
    seed: int = typer.Option(0, help="Seed of the main job and of the baselines' training."),
) -> None:
    """Train and package the baselines, serve four arms, run the traffic, print the table."""
    t0 = time.perf_counter()
    workdir = workdir.expanduser().resolve()
    os.environ["BENTOML_HOME"] = str(workdir / "bentoml")  # before anything imports bentoml
    from flows.pipeline import PRESET_BUDGETS

    if preset not in PRESET_BUDGETS:
        fail(f"--preset must be one of {sorted(PRESET_BUDGETS)}, got {preset!r}")
    summary = prepare(workdir, preset, seed)
    t_prep = time.perf_counter()
    from bento.ab import ab_report
    from bento.registry import RolloutError, experiment_of, start_arms, stop_experiment
    from bento.rollout import checkpoint_of, holdout_auc
    from features.simulator import latent_state, read_manifest
    from features.simulator.http import HttpService
    from features.simulator.traffic import simulate_online
    from flows.common import Layout
    from flows.pipeline import serving, smoke_query

    layout = Layout.of(workdir)
    targets = json.loads((layout.dataset / "manifest.json").read_text())["target_domains"]
    bentos = {t["domain"]: t for t in summary["bentos"] if t["domain"] in targets}  # not onboarded ones
    domain = domain or summary["bentos"][0]["domain"]
    if domain not in bentos:
        fail(f"--domain {domain!r}: the main job's dataset and Bentos cover {sorted(bentos)}")
    try:
        running = experiment_of(domain)
    except RolloutError as exc:
        fail(str(exc))
    if running:  # checked before training: the arms could not start
        fail(f"{domain} already runs experiment {running['id']!r}; `dacdr ab stop --domain {domain}` first")
    runs = layout.runs
    subset = domain_dataset(layout.dataset, domain, workdir / "datasets" / domain)
    tags = {
        CONTROL_MODEL: stored_model(CONTROL_MODEL, layout.dataset, runs / f"{CONTROL_MODEL}_{domain}", domain,
                                    seed),
        "dnn_single": stored_model("dnn_single", subset, runs / f"dnn_single_{domain}", domain, seed),
        "category_transfer": stored_model("category_transfer", layout.dataset,
                                          runs / f"category_transfer_{domain}", domain, seed),
        "dacdr": bentos[domain]["model"],
    }
    holdout = holdout_auc(layout.dataset, "test", domain)
    auc = {arm: round(holdout(checkpoint_of(tag, domain)[1]), 4) for arm, tag in tags.items()}
    t_train = time.perf_counter()
    base = workdir / "online_models" / datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    query = smoke_query(layout.curated, domain, summary["days"][-1])
    manifest = read_manifest(layout.logs)
    world = latent_state(manifest["preset"], manifest["seed"], manifest["n_targets"])
    per_seed, joined = [], []
    with serving(bentos[domain]["bento"], layout.feast, base / "serve.log") as url:
        for k in range(seeds):
            traffic_seed = first_seed + k
            name, t_seed = f"online-models-{traffic_seed}", time.perf_counter()
            exp = start_arms(domain, {arm: tags[arm] for arm in CANDIDATES}, control=tags[CONTROL_MODEL],
                             experiment_id=name, salt=name)
            try:
                wait_for_arms(url, exp["id"], query)
                zone = traffic_zone(layout.logs, base / f"seed{traffic_seed}")
                simulate_online(zone, {domain: HttpService(url)}, days, traffic_seed, requests, state=world)
            finally:
                stop_experiment(domain, "benchmarks/online_models.py: traffic done")
            seconds = round(time.perf_counter() - t_seed, 1)
            rows = joined_of(zone, exp["id"])
            answered = pc.count_distinct(rows.column("request_id")).as_py()
            if answered != days * requests:  # every request must come from this experiment's arms
                raise RuntimeError(f"seed {traffic_seed}: {answered} of {days * requests} requests in {name}")
            joined.append(poolable(rows, traffic_seed))
            arms = summarise(ab_report(rows, "control"))
            within = served_auc(world, domain, rows)
            for arm, row in arms.items():
                row["served_auc"] = within[arm]
            per_seed.append({"seed": traffic_seed, "seconds": seconds, "oracle_served_auc": within[ORACLE],
                             "arms": arms})
    pooled = summarise(ab_report(pa.concat_tables(joined), "control"))
    for arm, row in pooled.items():
        row["served_auc"] = round(float(np.mean([s["arms"][arm]["served_auc"] for s in per_seed])), 4)
    out = {
        "preset": preset, "domain": domain, "days": days, "requests_per_day": requests,
        "traffic_seeds": [s["seed"] for s in per_seed], "control": "control",
        "models": tags, "holdout_auc": {("control" if a == CONTROL_MODEL else a): v for a, v in auc.items()},
        "oracle_served_auc": round(float(np.mean([s["oracle_served_auc"] for s in per_seed])), 4),
        "per_seed": per_seed, "pooled": pooled, "zones": str(base),
        "seconds": {"prepare": round(t_prep - t0, 1), "baselines": round(t_train - t_prep, 1),
                    "serve_and_traffic": round(time.perf_counter() - t_train, 1),
                    "total": round(time.perf_counter() - t0, 1)},
        "load": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out, indent=1))
    print(markdown(out))


if __name__ == "__main__":
    app()
