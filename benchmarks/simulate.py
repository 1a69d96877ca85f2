"""Benchmark the log simulator: rows, seconds, rows/s, peak RSS per preset, and how time scales with rows.

Each preset runs in a fresh subprocess so its peak RSS is its own.
    .venv/bin/python benchmarks/simulate.py                     # demo and bench
    .venv/bin/python benchmarks/simulate.py --preset tiny --preset demo
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


def _dir_bytes(root: Path) -> int:
    """Total size of the files under root."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run_one(preset: str, seed: int, out: Path) -> dict:
    """Simulate one preset in this process; its figures as a dict."""
    from features.simulator import simulate
    from models.oracle import oracle_auc

    load = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    summary = simulate(preset, seed=seed, out=out)
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # both threads (generate + write)
    peak_mb = r1.ru_maxrss / 1024  # Linux: KiB
    return {
        "preset": preset,
        "rows": summary.total_rows,
        "rows_by_table": summary.rows,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "rows_per_s": round(summary.total_rows / seconds),
        "rows_per_cpu_s": round(summary.total_rows / cpu),
        "load_before": round(load, 1),
        "peak_rss_mb": round(peak_mb),
        "disk_mb": round(_dir_bytes(out) / 2**20, 1),
        "ctr": {k: round(v.ctr, 4) for k, v in summary.domains.items()},
        "overlap": {k: round(v.overlap, 3) for k, v in summary.domains.items()},
        "oracle_auc": {k: round(v, 3) for k, v in oracle_auc(out, list(summary.domains)).items()},
        "cold_test_users": {k: v.cold_test_users for k, v in summary.domains.items()},
    }


@app.command()
def main(
    preset: list[str] = typer.Option(["demo", "bench"], help="Presets to run (repeat the option)."),
    seed: int = typer.Option(0, help="Simulator seed."),
    workdir: Path = typer.Option(None, help="Where to write (default: a temp dir, removed afterwards)."),
    one: bool = typer.Option(False, help="Internal: run the single preset in this process, print JSON."),
) -> None:
    """Run the simulator per preset and print rows, seconds, rows/s, peak RSS and the scaling ratio."""
    base = workdir or Path(tempfile.mkdtemp(prefix="dacdr-bench-"))
    if one:
        print(json.dumps(run_one(preset[0], seed, base / preset[0])))
        return
    results = []
    try:
        for name in preset:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                "--preset",
                name,
                "--seed",
                str(seed),
                "--workdir",
                str(base),
            ]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            shutil.rmtree(base / name, ignore_errors=True)  # bench output is GBs: keep disk bounded
    finally:
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"cores: {os.cpu_count()}; wall figures depend on other load (1-min load average shown)")
    head = ["preset", "rows", "wall s", "rows/s", "CPU s", "rows/CPU-s", "peak RSS MB", "disk MB", "load"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in results:
        cells = [
            r["preset"],
            f"{r['rows']:,}",
            f"{r['seconds']:.1f}",
            f"{r['rows_per_s']:,}",
            f"{r['cpu_seconds']:.1f}",
            f"{r['rows_per_cpu_s']:,}",
            f"{r['peak_rss_mb']:,}",
            f"{r['disk_mb']:,.1f}",
            f"{r['load_before']:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    for r in results:
        print(f"{r['preset']}: rows {r['rows_by_table']}")
        print(f"  ctr {r['ctr']}\n  overlap {r['overlap']}\n  oracle AUC {r['oracle_auc']}")
        print(f"  cold test-day users {r['cold_test_users']}")
    for a, b in zip(results, results[1:], strict=False):
        rows_ratio = b["rows"] / a["rows"]
        time_ratio = b["cpu_seconds"] / a["cpu_seconds"]
        print(
            f"scaling {a['preset']} -> {b['preset']}: rows x{rows_ratio:.1f}, CPU time x{time_ratio:.1f} "
            f"(time/rows = {time_ratio / rows_ratio:.2f}; 1.00 = linear), "
            f"peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.1f}"
        )


if __name__ == "__main__":
    app()
