"""Benchmark: sequence_snapshots and build_training_table / build_dataset on a simulator preset.

Usage: .venv/bin/python benchmarks/build_dataset.py [--preset demo] [--seed 0] [--workdir .work/bench_dataset]
Prints wall and CPU time, rows/s and peak RSS of each step (the landing zone is simulated once and reused).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo", help="simulator preset: tiny, demo or bench")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--workdir", type=Path, default=Path(".work/bench_dataset"), help="scratch folder")
    parser.add_argument("--max-len", type=int, default=50, help="sequence length")
    parser.add_argument(
        "--snapshots-only",
        action="store_true",
        help="time sequence_snapshots only (the bench preset's table is huge)",
    )
    args = parser.parse_args()

    from features import contract as C
    from features import io
    from features.dataset import build_dataset, build_training_table
    from features.sequences import sequence_snapshots
    from features.simulator import simulate

    logs = args.workdir / f"{args.preset}-{args.seed}" / "logs"
    if not (logs / C.IMPRESSIONS).is_dir():
        t = time.perf_counter()
        simulate(args.preset, seed=args.seed, out=logs)
        print(f"simulate {args.preset}: {time.perf_counter() - t:.1f}s (not part of the benchmark)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")

    t = time.perf_counter()
    behaviors = io.read_table(logs, C.BEHAVIORS)
    items = io.read_table(logs, C.ITEMS)
    domains = io.read_table(logs, C.DOMAINS)
    read_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    snaps = sequence_snapshots(behaviors, items, domains, args.max_len)
    snap_s, snap_cpu = time.perf_counter() - t, time.process_time() - cpu
    print(
        f"read behaviors/items/domains: {behaviors.num_rows:,} behaviours in {read_s:.1f}s\n"
        f"sequence_snapshots: {snaps.num_rows:,} snapshots, {snaps.nbytes / 1e6:.0f} MB, {snap_s:.1f}s "
        f"(CPU {snap_cpu:.1f}s) "
        f"= {behaviors.num_rows / snap_s:,.0f} behaviours/s; peak RSS {peak_rss_mb():,.0f} MB"
    )
    del snaps
    if args.snapshots_only:
        return

    t, cpu = time.perf_counter(), time.process_time()
    table = build_training_table(logs, max_len=args.max_len)
    tt_s, tt_cpu = time.perf_counter() - t, time.process_time() - cpu
    print(
        f"build_training_table: {len(table):,} rows in {tt_s:.1f}s (CPU {tt_cpu:.1f}s) "
        f"= {len(table) / tt_s:,.0f} rows/s "
        f"(reads + snapshots + attach); peak RSS {peak_rss_mb():,.0f} MB"
    )
    del table

    out = args.workdir / f"{args.preset}-{args.seed}" / "dataset"
    t, cpu = time.perf_counter(), time.process_time()
    build_dataset(logs, out, max_len=args.max_len)
    ds_s, ds_cpu = time.perf_counter() - t, time.process_time() - cpu
    rows = json.loads((out / "manifest.json").read_text())["rows"]
    n = sum(rows.values())
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(
        f"build_dataset: {n:,} rows ({rows}) in {ds_s:.1f}s (CPU {ds_cpu:.1f}s) = {n / ds_s:,.0f} rows/s, "
        f"{size:.0f} MB on disk; "
        f"peak RSS {peak_rss_mb():,.0f} MB"
    )


if __name__ == "__main__":
    main()
