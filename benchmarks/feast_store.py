"""Feature-store speed: materialization rows/s, online lookup p50/p99, historical retrieval of 1M rows.

    .venv/bin/python benchmarks/feast_store.py --preset demo [--redis] [--hist-rows 1000000]

Simulates the preset's logs (seeded), builds the store once, then for each online store (SQLite,
and Redis when --redis and redis-server is installed: started on a free localhost port) compares
Feast's own `FeatureStore.materialize` with dacdr's `features.store.materialize` (the product's
path: large online_write_batch calls), and times online lookups and one historical retrieval.
Prints a markdown table (paste into docs/_bench_feast.md).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


@dataclass
class Figures:
    """One benchmark line."""

    what: str
    value: float
    unit: str


def _free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clone(src: Path, dst: Path, online_kind: str, redis_url: str | None) -> None:
    """A second store over the same built parquet (no rebuild): copy data, render for `online`, apply."""
    from features import store as S

    shutil.copytree(S.data_dir(src), S.data_dir(dst), ignore=shutil.ignore_patterns("*.db"))
    S.render_repo(dst, S.OnlineConfig(kind=online_kind, redis_url=redis_url))
    S.apply(dst)


def _latency(fn, calls: int) -> tuple[float, float]:
    """p50 and p99 of `fn()` in milliseconds over `calls` calls (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def bench_online_store(
    base: Path, kind: str, redis_url: str | None, users: np.ndarray, seed: int
) -> list[Figures]:
    """Feast's materialize vs dacdr's on fresh stores of one kind; then online lookup latency."""
    from features import store as S

    out: list[Figures] = []
    feast_dir = base.parent / f"{kind}_feast"
    dacdr_dir = base.parent / f"{kind}_dacdr"
    if kind == S.ONLINE_REDIS:
        import redis

        redis.Redis.from_url(redis_url).flushall()
    _clone(base, feast_dir, kind, redis_url)
    store = S.open_store(feast_dir)
    t0 = time.perf_counter()
    store.materialize(start_date=S.EPOCH, end_date=datetime.now(UTC))
    secs = time.perf_counter() - t0
    if kind == S.ONLINE_REDIS:
        redis.Redis.from_url(redis_url).flushall()
    _clone(base, dacdr_dir, kind, redis_url)
    result = S.materialize(dacdr_dir)
    rows = sum(result.rows.values())
    out.append(Figures(f"{kind}: materialize, Feast FeatureStore.materialize", rows / secs, "rows/s"))
    out.append(Figures(f"{kind}: materialize, dacdr batched (product)", rows / result.seconds, "rows/s"))
    out.append(Figures(f"{kind}: materialize rows (all views)", rows, "rows"))
    store = S.open_store(dacdr_dir)
    rng = np.random.default_rng(seed)
    for n in (1, 100):
        p50, p99 = _latency(
            lambda n=n: S.online_features(store, rng.choice(users, n).tolist(), "fashion_feed"), 200
        )
        out.append(Figures(f"{kind}: online_features {n} user(s) p50", p50, "ms"))
        out.append(Figures(f"{kind}: online_features {n} user(s) p99", p99, "ms"))
    return out


def main() -> None:
    """Run the benchmark and print figures as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", help="simulator preset (tiny, demo, bench)")
    parser.add_argument("--seed", type=int, default=0, help="simulator and sampling seed")
    parser.add_argument(
        "--hist-rows", type=int, default=1_000_000, help="entity rows for historical retrieval"
    )
    parser.add_argument(
        "--redis", action="store_true", help="also bench a Redis online store (needs redis-server)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()

    import pandas as pd

    from features import contract as C
    from features import io
    from features import store as S
    from features.simulator import simulate

    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="bench_feast_"))
    logs = scratch / "logs"
    figures: list[Figures] = []
    t0 = time.perf_counter()
    simulate(args.preset, seed=args.seed, out=logs)
    figures.append(Figures("simulate logs", time.perf_counter() - t0, "s"))
    base = scratch / "base"
    t0 = time.perf_counter()
    built = S.build(logs, base)
    figures.append(Figures("build (snapshots + views parquet)", time.perf_counter() - t0, "s"))
    figures.append(Figures("user_sequences snapshot rows", built.rows["user_sequences.parquet"], "rows"))
    S.apply(base)
    users = pd.read_parquet(S.data_dir(base) / "user_sequences.parquet", columns=[C.USER_ID])[
        C.USER_ID
    ].unique()

    kinds: list[tuple[str, str | None]] = [(S.ONLINE_SQLITE, None)]
    redis_proc = None
    if args.redis:
        binary = shutil.which("redis-server")
        if binary is None:
            print("redis-server not installed (apt-get install redis-server); skipping Redis")
        else:
            port = _free_port()
            redis_proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            kinds.append((S.ONLINE_REDIS, f"redis://127.0.0.1:{port}/0"))
    try:
        for kind, url in kinds:
            figures += bench_online_store(base, kind, url, users, args.seed)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()

    imps = io.read_table(logs, C.IMPRESSIONS).to_pandas()
    rng = np.random.default_rng(args.seed)
    rows = imps.iloc[rng.integers(0, len(imps), args.hist_rows)].reset_index(drop=True)
    t0 = time.perf_counter()
    got = S.historical_features(base, rows)
    secs = time.perf_counter() - t0
    assert len(got) == len(rows)
    figures.append(Figures(f"historical_features, {len(rows):,} rows (duckdb offline)", secs, "s"))
    t0 = time.perf_counter()
    table = S.historical_training_table(base, logs)
    figures.append(Figures(f"historical_training_table, {len(table):,} rows", time.perf_counter() - t0, "s"))

    print(
        f"\npreset={args.preset} seed={args.seed} machine={platform.machine()} "
        f"date={datetime.now(UTC):%Y-%m-%d}"
    )
    print("| measure | value | unit |\n|---|---:|---|")
    for f in figures:
        print(f"| {f.what} | {f.value:,.2f} | {f.unit} |")


if __name__ == "__main__":
    main()
