"""Feature-store speed: materialization rows/s, online lookup p50/p99, historical retrieval of 1M rows.

    .venv/bin/python benchmarks/feast_store.py --preset demo [--redis] [--hist-rows 1000000]

Simulates the preset's logs (seeded), builds the store once, then for each online store (SQLite,
and Redis when --redis and redis-server is installed: started on a free localhost port) compares,
in one run, Feast's own `FeatureStore.materialize`, the previous product path (Feast's pull, one
proto per value) and dacdr's `features.materialize.materialize` (arg_max pull, column-wise bytes) per
view; times `dacdr features push` of the last day and its replay, online lookups (per-field service
vs packed view) and one historical retrieval (--hist-rows 0 skips the offline part).
Prints a markdown table (paste into docs/_bench_feast.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dacdr.processes import free_port


@dataclass
class Figures:
    """One benchmark line."""

    what: str
    value: float
    unit: str


def _clone(src: Path, dst: Path, online_kind: str, redis_url: str | None) -> None:
    """A second store over the same built parquet (no rebuild): copy data, render for `online`, apply."""
    from features import store as fs

    shutil.copytree(fs.data_dir(src), fs.data_dir(dst), ignore=shutil.ignore_patterns("*.db"))
    fs.render_repo(dst, fs.OnlineConfig(kind=online_kind, redis_url=redis_url))
    fs.apply(dst)


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


def _protos_path(workdir: Path) -> tuple[int, float]:
    """The previous product path, for comparison in the same run: Feast's duckdb pull (window query)
    and one ValueProto per value through online_write_batch (batched). Returns (user rows, seconds)."""
    from feast.utils import _convert_arrow_to_proto

    from features import store as fs
    from features.feature_repo.views import USER_SEQUENCES

    store = fs.open_store(workdir)
    provider = store._get_provider()
    fv = store.get_feature_view(USER_SEQUENCES)
    t0 = time.perf_counter()
    table = provider.offline_store.pull_latest_from_table_or_query(
        config=store.config, data_source=fv.batch_source, join_key_columns=["user_id"],
        feature_name_columns=[f.name for f in fv.features], timestamp_field=fv.batch_source.timestamp_field,
        created_timestamp_column=None, start_date=fs.EPOCH, end_date=datetime.now(UTC),
    ).to_arrow()
    for batch in table.to_batches(max_chunksize=fs.WRITE_BATCH_ROWS):
        rows = _convert_arrow_to_proto(batch, fv, {"user_id": fv.entity_columns[0].dtype.to_value_type()})
        provider.online_write_batch(store.config, fv, rows, None)
    return table.num_rows, time.perf_counter() - t0


def _fresh(base: Path, dst: Path, kind: str, redis_url: str | None) -> None:
    """A clean online store of `kind` over base's parquet (Redis: flushed)."""
    if kind == "redis":
        import redis

        redis.Redis.from_url(redis_url).flushall()
    if dst.exists():
        shutil.rmtree(dst)
    _clone(base, dst, kind, redis_url)


def bench_online_store(
    base: Path, logs: Path, kind: str, redis_url: str | None, users: np.ndarray, seed: int
) -> list[Figures]:
    """Per online store: Feast's materialize, the previous proto path and dacdr's, per view; the
    serving views alone; a push of the last day and its replay; online reads."""
    from features import contract as C
    from features import io, materialize, online
    from features import store as fs
    from features.feature_repo.views import DOMAIN_FEATURES, ITEM_SIDE_INFO, USER_PACKED, USER_SEQUENCES
    from features.push import push

    out: list[Figures] = []
    work = base.parent / f"{kind}_store"
    _fresh(base, work, kind, redis_url)
    t0 = time.perf_counter()
    fs.open_store(work).materialize(start_date=fs.EPOCH, end_date=datetime.now(UTC))
    feast_s = time.perf_counter() - t0
    _fresh(base, work, kind, redis_url)
    n_old, old_s = _protos_path(work)
    _fresh(base, work, kind, redis_url)
    result = materialize.materialize(work)
    total = sum(result.rows.values())
    out.append(Figures(f"{kind}: all views, Feast FeatureStore.materialize", total / feast_s, "rows/s"))
    out.append(Figures(f"{kind}: all views, dacdr materialize", total / result.seconds, "rows/s"))
    users_s = result.rows[USER_SEQUENCES] / result.seconds
    out.append(Figures(f"{kind}: all views, dacdr materialize, users", users_s, "user rows/s"))
    old = f"{kind}: user_sequences, previous path (Feast pull + protos)"
    out.append(Figures(old, n_old / old_s, "user rows/s"))
    for view, secs in result.view_seconds.items():
        if result.rows[view]:
            out.append(Figures(f"{kind}: {view}, dacdr materialize", result.rows[view] / secs, "rows/s"))
    _fresh(base, work, kind, redis_url)
    served = materialize.materialize(work, views=[USER_PACKED, ITEM_SIDE_INFO, DOMAIN_FEATURES])
    out.append(Figures(f"{kind}: serving views only (packed + items + domains), users",
                       served.rows[USER_PACKED] / served.seconds, "user rows/s"))

    # push: a store as of the last day's midnight, then that day's behaviour
    days = sorted({p.dt for p in io.data_partitions(logs, C.BEHAVIORS)})
    midnight = datetime.fromisoformat(days[-1]).replace(tzinfo=UTC)
    _fresh(base, work, kind, redis_url)
    materialize.materialize(work, midnight)
    pushed = push(logs, days[-1], work)
    replay = push(logs, days[-1], work)
    out.append(Figures(f"{kind}: push {pushed.events:,} events, {pushed.changed:,} users changed",
                       pushed.events / pushed.seconds, "events/s"))
    out.append(Figures(f"{kind}: push replay (nothing changes)", replay.events / replay.seconds, "events/s"))

    store = fs.open_store(work)
    rng = np.random.default_rng(seed)
    reads = {
        "online_features (dacdr_v1, typed frame)": lambda n: online.online_features(
            store, rng.choice(users, n).tolist(), "fashion_feed"
        ),
        "packed_sequences (packed view, bytes)": lambda n: online.packed_sequences(
            store, rng.choice(users, n).tolist()
        ),
    }
    for name, read in reads.items():
        for n in (1, 100):
            p50, p99 = _latency(lambda n=n, read=read: read(n), 300)
            out.append(Figures(f"{kind}: {name}, {n} user(s) p50", p50, "ms"))
            out.append(Figures(f"{kind}: {name}, {n} user(s) p99", p99, "ms"))
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
    from features import io, offline
    from features import store as fs
    from features.simulator import simulate

    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="bench_feast_"))
    logs = scratch / "logs"
    figures: list[Figures] = []
    t0 = time.perf_counter()
    simulate(args.preset, seed=args.seed, out=logs)
    figures.append(Figures("simulate logs", time.perf_counter() - t0, "s"))
    base = scratch / "base"
    t0 = time.perf_counter()
    built = fs.build(logs, base)
    figures.append(Figures("build (snapshots + views parquet)", time.perf_counter() - t0, "s"))
    figures.append(Figures("user_sequences snapshot rows", built.rows["user_sequences.parquet"], "rows"))
    fs.apply(base)
    users = pd.read_parquet(fs.data_dir(base) / "user_sequences.parquet", columns=[C.USER_ID])[
        C.USER_ID
    ].unique()

    kinds: list[tuple[str, str | None]] = [(fs.ONLINE_SQLITE, None)]
    redis_proc = None
    if args.redis:
        binary = shutil.which("redis-server")
        if binary is None:
            print("redis-server not installed (apt-get install redis-server); skipping Redis")
        else:
            port = free_port()
            redis_proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            kinds.append((fs.ONLINE_REDIS, f"redis://127.0.0.1:{port}/0"))
    try:
        for kind, url in kinds:
            figures += bench_online_store(base, logs, kind, url, users, args.seed)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()

    if args.hist_rows == 0:
        _print(args, figures)
        return
    imps = io.read_table(logs, C.IMPRESSIONS).to_pandas()
    rng = np.random.default_rng(args.seed)
    rows = imps.iloc[rng.integers(0, len(imps), args.hist_rows)].reset_index(drop=True)
    t0 = time.perf_counter()
    got = offline.historical_features(base, rows)
    secs = time.perf_counter() - t0
    assert len(got) == len(rows)
    figures.append(Figures(f"historical_features, {len(rows):,} rows (duckdb offline)", secs, "s"))
    t0 = time.perf_counter()
    table = offline.historical_training_table(base, logs)
    secs = time.perf_counter() - t0
    figures.append(Figures(f"historical_training_table, {len(table):,} rows", secs, "s"))

    _print(args, figures)


def _print(args: argparse.Namespace, figures: list[Figures]) -> None:
    """The figures as a markdown table, headed by preset, machine, date and load average."""
    print(
        f"\npreset={args.preset} seed={args.seed} machine={platform.machine()} "
        f"date={datetime.now(UTC):%Y-%m-%d %H:%M} UTC load={os.getloadavg()}"
    )
    print("| measure | value | unit |\n|---|---:|---|")
    for f in figures:
        print(f"| {f.what} | {f.value:,.2f} | {f.unit} |")


if __name__ == "__main__":
    main()
