"""Serving benchmark: drive `bentoml serve` of a domain's Bento over loopback, beside the in-process floor.

Builds everything it needs from a seeded preset in --workdir (simulate -> dataset -> train ->
Feast build/apply/materialize -> package), unless the pieces already exist there, then:

  * in-process floor: Ranker.score() for one 100-candidate query, the exact work /rank does
    minus HTTP (same process, same model, same Feast online store);
  * HTTP: a second process (this one) drives the server with N concurrent clients for a bounded
    time and request count, per concurrency level, on /rank and on /rank_batch (adaptive batching,
    one query per call, so concurrent calls are merged server-side);
  * /rank_batch servers with shorter max_latency_ms budgets, to show the 503s they produce.

Prints one line per run and the ratios against the targets (zero errors, p99 < 50 ms at
concurrency 8, HTTP p50 within 3x of the floor). Example:

    .venv/bin/python benchmarks/serving.py --workdir /tmp/bench_serving --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dacdr.processes import free_port, stop_group

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    """Figures of one load run."""

    name: str
    concurrency: int
    requests: int
    errors: int
    status: dict[str, int]
    rps: float
    p50_ms: float
    p99_ms: float


def prepare(workdir: Path, preset: str, seed: int, epochs: int, domain: str | None) -> dict[str, str]:
    """Simulate, build the dataset, train, build the Feast store and package (each step once)."""
    from features import materialize
    from features import store as fs
    from features.dataset import build_dataset
    from features.simulator import simulate
    from models.run import train

    logs, data, run, feast = workdir / "logs", workdir / "dataset", workdir / "run", workdir / "feast"
    if not (logs / "impressions").is_dir():
        simulate(preset, seed=seed, out=logs)
    if not (data / "manifest.json").is_file():
        build_dataset(logs, data)
    if not (run / "checkpoint.pt").is_file():
        train(data, run, model="dacdr", device="cpu", seed=seed, epochs=epochs, progress=False)
    if not (fs.data_dir(feast) / "online_store.db").is_file():
        fs.build(logs, feast)
        fs.apply(feast)
        materialize.materialize(feast)
    if domain is None:
        domain = sorted(json.loads((data / "manifest.json").read_text())["target_domains"])[0]
    tags_file = workdir / "tags.json"
    if not tags_file.is_file():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "dacdr.cli",
                "package",
                str(run),
                "--domain",
                domain,
                "--feast-repo",
                str(feast),
            ],
            env=env_for(workdir),
            capture_output=True,
            text=True,
            check=True,
        )
        tags_file.write_text(proc.stdout.strip().splitlines()[-1])
    return {**json.loads(tags_file.read_text()), "domain": domain, "feast": str(feast), "logs": str(logs)}


def env_for(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment with this benchmark's BentoML home and feature store."""
    return {
        **os.environ,
        "BENTOML_HOME": str(workdir / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "DACDR_FEAST_REPO": str(workdir / "feast"),
        **(extra or {}),
    }


def start_server(
    workdir: Path, bento: str, port: int, extra_env: dict[str, str] | None = None, workers: int = 1
) -> subprocess.Popen:
    """`bentoml serve BENTO` on 127.0.0.1:PORT in its own process group; returns once /readyz is 200."""
    from bento.config import workers_env
    from bento.launch import start_bento, wait_ready

    log = workdir / f"serve-{port}.log"
    url, proc = start_bento(bento, workers_env(env_for(workdir, extra_env), workers), log, port)
    try:
        wait_ready(url, proc, log, timeout=300)
    except BaseException:
        stop_server(proc)
        raise
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    """Stop exactly the server's process group."""
    stop_group(proc)


def workload(feast: str, domain: str, n: int, candidates: int, seed: int) -> list[dict]:
    """`n` seeded queries: users from the store (some unknown), `candidates` catalogue items each."""
    import pyarrow.parquet as pq

    from features import contract as C
    from features.feature_repo.sources import ITEMS_FILE, USER_SEQUENCES_FILE
    from features.store import data_dir

    rng = np.random.default_rng(seed)
    users = np.unique(pq.read_table(data_dir(feast) / USER_SEQUENCES_FILE, columns=[C.USER_ID]).column(0))
    items = pq.read_table(data_dir(feast) / ITEMS_FILE, columns=[C.ITEM_ID]).column(0).to_numpy()
    out = []
    for _ in range(n):
        user = int(rng.choice(users)) if rng.random() < 0.9 else int(10**12 + rng.integers(1000))
        cand = rng.choice(items, size=min(candidates, len(items)), replace=False)
        out.append({"user_id": user, "item_ids": [int(i) for i in cand]})
    return out


async def drive(
    url: str, route: str, queries: list[dict], concurrency: int, seconds: float, max_requests: int
) -> Result:
    """`concurrency` clients send queries back to back until the time or request budget is spent."""
    import httpx

    lat: list[float] = []
    status: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(c: httpx.AsyncClient, k: int) -> None:
        """One closed-loop client."""
        nonlocal sent
        i = k
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            q = queries[i % len(queries)]
            body = {"queries": [q]} if route == "/rank_batch" else q
            t0 = time.perf_counter()
            try:
                r = await c.post(route, json=body)
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            lat.append(time.perf_counter() - t0)
            status[code] = status.get(code, 0) + 1
            i += concurrency

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(concurrency)))
        wall = time.perf_counter() - t0
    arr = np.array(lat) * 1000
    errors = sum(v for k, v in status.items() if k != "200")
    return Result(
        route,
        concurrency,
        len(lat),
        errors,
        status,
        len(lat) / wall,
        float(np.percentile(arr, 50)),
        float(np.percentile(arr, 99)),
    )


def floor(
    tags: dict[str, str], queries: list[dict], seconds: float, max_requests: int, log_dir: Path | None = None
) -> Result:
    """In-process Router.rank() on the same queries (scoring, the response, the served log when
    `log_dir` is given): the floor HTTP adds to."""
    from bento.ranker import Query, Ranker
    from bento.router import Router
    from bento.served_log import ServedLog

    ranker = Ranker.load(tags["domain"], tags["model"], tags["feast"])
    log = ServedLog(log_dir) if log_dir is not None else None
    router = Router(ranker, log)
    lat = []
    deadline = time.perf_counter() + seconds
    t_start = time.perf_counter()
    for i in range(max_requests):
        if time.perf_counter() > deadline:
            break
        q = Query.of(queries[i % len(queries)]["user_id"], queries[i % len(queries)]["item_ids"])
        t0 = time.perf_counter()
        router.rank([q])
        lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    if log is not None:
        log.close()
    arr = np.array(lat) * 1000
    return Result(
        "in-process" + (" +log" if log is not None else ""),
        1,
        len(lat),
        log.dropped if log is not None else 0,
        {"written": log.written} if log is not None else {},
        len(lat) / wall,
        float(np.percentile(arr, 50)),
        float(np.percentile(arr, 99)),
    )


def add_prepare_args(ap: argparse.ArgumentParser) -> None:
    """The options of `prepare` (shared with benchmarks/scoring_path.py)."""
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dacdr_bench_serving"))
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--domain", default=None, help="target domain to serve (default: the first)")


def prepared(args: argparse.Namespace) -> dict[str, str]:
    """Set this process's threads, point it at the workdir's BentoML home and store, then `prepare`."""
    from dacdr.threads import configure

    configure()  # $DACDR_THREADS, else half the cores: simulate/train/materialize run in this process
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {k: v for k, v in env_for(args.workdir).items() if k.startswith(("BENTOML_", "DACDR_"))}
    )
    return prepare(args.workdir, args.preset, args.seed, args.epochs, args.domain)


def main() -> None:
    """Parse arguments, prepare, measure, print figures and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prepare_args(ap)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=10.0, help="time budget per run")
    ap.add_argument("--max-requests", type=int, default=3000, help="request budget per run")
    ap.add_argument("--routes", default="/rank,/rank_batch")
    ap.add_argument(
        "--batch-latency-ms",
        default="5,1000",
        help="also run /rank_batch with these max_latency_ms budgets (comma list; empty: skip)",
    )
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (one torch thread each)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args()

    tags = prepared(args)
    queries = workload(tags["feast"], tags["domain"], 200, args.candidates, args.seed)
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"# machine: {os.cpu_count()} cpus; load avg {os.getloadavg()[0]:.2f}; bento {tags['bento']}")

    # the floor is measured before and after the HTTP runs; ratios use the lower (faster) one,
    # so a noisy machine can only make HTTP look worse, never better
    results = [floor(tags, queries, args.seconds, args.max_requests)]
    port = free_port()
    server = start_server(args.workdir, tags["bento"], port, workers=args.workers)
    try:
        for route in args.routes.split(","):
            asyncio.run(drive(f"http://127.0.0.1:{port}", route, queries, 4, 2.0, 100))  # warm-up
            for c in levels:
                results.append(
                    asyncio.run(
                        drive(f"http://127.0.0.1:{port}", route, queries, c, args.seconds, args.max_requests)
                    )
                )
    finally:
        stop_server(server)
    results.append(floor(tags, queries, args.seconds, args.max_requests))
    for budget in [int(b) for b in args.batch_latency_ms.split(",") if b]:
        port = free_port()
        server = start_server(args.workdir, tags["bento"], port, {"DACDR_BATCH_MAX_LATENCY_MS": str(budget)},
                              workers=args.workers)
        try:
            for c in levels[1:]:
                r = asyncio.run(
                    drive(
                        f"http://127.0.0.1:{port}", "/rank_batch", queries, c, args.seconds, args.max_requests
                    )
                )
                r.name = f"/rank_batch max_latency_ms={budget}"
                results.append(r)
        finally:
            stop_server(server)

    print(f"{'run':<38}{'conc':>5}{'reqs':>7}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}  status")
    for r in results:
        print(
            f"{r.name:<38}{r.concurrency:>5}{r.requests:>7}{r.errors:>7}{r.rps:>9.1f}{r.p50_ms:>9.2f}"
            f"{r.p99_ms:>9.2f}  {r.status}"
        )
    base = min((r for r in results if r.name == "in-process"), key=lambda r: r.p50_ms)
    for r in results:
        if r.name == "/rank":
            print(
                f"# /rank c={r.concurrency}: p50 {r.p50_ms / base.p50_ms:.2f}x the in-process floor "
                f"(target <= 3x); p99 {r.p99_ms:.1f} ms; errors {r.errors}"
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
