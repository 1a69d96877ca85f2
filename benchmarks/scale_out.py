"""Benchmark: the data stages on the local engine (duckdb/pyarrow) and on Ray (2 local workers).

Usage: .venv/bin/python benchmarks/scale_out.py [--preset demo] [--engine local --engine ray]
           [--workers 2] [--validate-days 3] [--stage validate --stage snapshots --stage table]
           [--workdir .work/bench_scale_out]

Stages, each timed on its own: validate (the last --validate-days days, one validate_day each),
sequence snapshots (the whole zone) and the training table (build_training_table). Each engine runs
in a fresh subprocess, so each peak RSS is its own: the process tree's (the driver plus, on Ray, the
raylet, GCS and workers), sampled every 0.2 s. Every figure is printed with the 1-minute load average
before and after it: on a shared machine they are only comparable at a similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil


class TreeRss:
    """Peak resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, every_s: float = 0.2) -> None:
        """Start sampling now."""
        self.peak = 0
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> int:
        """Current RSS of the tree, in bytes (processes that vanish mid-sample count zero)."""
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        """Sample until stopped."""
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.every_s)

    def reset(self) -> None:
        """Restart the peak from the current RSS (one peak per stage)."""
        self.peak = self._sample()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def stage(name: str, rows: int, fn, rss: TreeRss) -> dict:  # noqa: ANN001 - a zero-argument callable
    """Run `fn` once; its wall time, rows/s over `rows`, peak tree RSS and the load around it."""
    rss.reset()
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t
    row = {"stage": name, "rows": rows, "wall_s": round(wall, 2), "rows_per_s": round(rows / wall),
           "peak_rss_gb": round(rss.peak / 1e9, 2), "load_before": round(load_before, 2),
           "load_after": round(os.getloadavg()[0], 2)}
    print(json.dumps(row), flush=True)
    return {"row": row, "out": out}


STAGES = ("validate", "snapshots", "table")


def run_engine(
    logs: Path, engine: str, workers: int, days: int, max_len: int, stages: list[str]
) -> list[dict]:
    """All stages on one engine, in this process (the parent starts one process per engine)."""
    from dacdr.engine import RAY, init_ray
    from dacdr.threads import configure
    from features import contract as C
    from features import io
    from features.dataset import build_training_table
    from features.validation import ValidationConfig, validate_day

    configure(1 if engine == RAY else workers)  # the driver: one thread on Ray, the workers' count locally
    rss = TreeRss()
    rows: list[dict] = []
    if engine == RAY:
        short = Path(tempfile.mkdtemp(prefix="rt_", dir="/tmp"))  # Ray's socket paths must stay short
        t = time.perf_counter()
        init_ray(num_cpus=workers, object_store_bytes=2 * 1024**3, temp_dir=short)
        print(f"ray start: {time.perf_counter() - t:.1f}s ({workers} CPUs)", flush=True)
    all_days = C.list_days(logs, C.IMPRESSIONS)
    lake = Path(tempfile.mkdtemp(prefix=f"lake_{engine}_", dir=logs.parent))
    config = ValidationConfig(data_docs=False, engine=engine)
    if "validate" in stages:
        for dt in all_days[:-days]:  # earlier days accepted first: the count bounds need a history
            validate_day(logs, dt, lake, config=ValidationConfig(data_docs=False))
        n_val = sum(io.read_table(logs, t, dt).num_rows for dt in all_days[-days:] for t in C.EVENT_TABLES)
        timed = all_days[-days:]
        rows.append(stage(f"validate {days} days", n_val,
                          lambda: [validate_day(logs, dt, lake, config=config) for dt in timed], rss)["row"])
    behaviors = io.read_table(logs, C.BEHAVIORS)
    items, domains = io.read_table(logs, C.ITEMS), io.read_table(logs, C.DOMAINS)
    if engine == RAY:
        from features.ray_data import sequence_snapshots
    else:
        from features.sequences import sequence_snapshots
    if "snapshots" in stages:
        rows.append(stage("sequence snapshots", behaviors.num_rows,
                          lambda: sequence_snapshots(behaviors, items, domains, max_len), rss)["row"])
    if "table" in stages:
        n_imps = io.read_table(logs, C.IMPRESSIONS).num_rows
        table = lambda: build_training_table(logs, max_len=max_len, engine=engine).shape  # noqa: E731
        rows.append(stage("training table (read + snapshots + attach)", n_imps, table, rss)["row"])
    rss.stop()
    if engine == RAY:
        from dacdr.engine import shutdown_ray

        shutdown_ray()
        shutil.rmtree(short, ignore_errors=True)
    return rows


def main() -> None:
    """Simulate the preset once, then run each engine in its own process and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo", help="simulator preset: tiny, demo or bench")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--workdir", type=Path, default=Path(".work/bench_scale_out"), help="scratch folder")
    parser.add_argument("--engine", action="append", choices=("local", "ray"), help="engines (default both)")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs (workers); local threads")
    parser.add_argument("--validate-days", type=int, default=3, help="days validated in the timed stage")
    parser.add_argument("--max-len", type=int, default=50, help="sequence length")
    parser.add_argument("--stage", action="append", choices=STAGES, help="stages (default all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # run one engine in this process
    args = parser.parse_args()
    logs = args.workdir / f"{args.preset}-{args.seed}" / "logs"
    if args.child:
        rows = run_engine(logs, args.child, args.workers, args.validate_days, args.max_len,
                          args.stage or list(STAGES))
        (logs.parent / f"scale_out_{args.child}.json").write_text(json.dumps(rows, indent=2) + "\n")
        return
    from features import contract as C
    from features.simulator import simulate

    if not (logs / C.IMPRESSIONS).is_dir():
        t = time.perf_counter()
        simulate(args.preset, seed=args.seed, out=logs)
        print(f"simulate {args.preset}: {time.perf_counter() - t:.1f}s (not part of the benchmark)")
    print(f"# machine: {os.cpu_count()} cpus, {psutil.virtual_memory().total / 1e9:.0f} GB; "
          f"preset {args.preset}; load avg {os.getloadavg()[0]:.2f}")
    for engine in args.engine or ["local", "ray"]:
        print(f"## engine {engine}", flush=True)
        cmd = [sys.executable, __file__, "--preset", args.preset, "--seed", str(args.seed), "--workdir",
               str(args.workdir), "--workers", str(args.workers), "--validate-days", str(args.validate_days),
               "--max-len", str(args.max_len), "--child", engine,
               *(f"--stage={s}" for s in args.stage or STAGES)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
