"""Served-log overhead: the in-process floor and the server, logging off vs on, side by side.

Reuses benchmarks/serving.py's prepared workdir (simulate -> train -> Feast -> package once),
then in one run: the in-process floor (Router.rank, 100 candidates) without and with the log,
and one server per setting (off, on) driven at concurrency C on /rank and /rank_batch. Prints one
line per run, the log's rows written/dropped, and the on/off ratios. Example:

    .venv/bin/python benchmarks/served_log.py --workdir /tmp/bench_serving --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (  # noqa: E402  # the sibling benchmark's helpers
    add_prepare_args,
    drive,
    floor,
    prepared,
    start_server,
    stop_server,
    workload,
)

from dacdr.processes import free_port  # noqa: E402


def rows_on_disk(root: Path) -> int:
    """Rows of every served-log parquet file under root."""
    import pyarrow.dataset as ds

    files = list(root.rglob("part-*.parquet"))
    return ds.dataset(files, format="parquet").count_rows() if files else 0


def sink_cost(answers: int = 20_000, candidates: int = 100) -> None:
    """CPU of the log alone: ServedRows + put_nowait on the request side, plus the writer thread."""
    import time

    import numpy as np

    from bento.served_log import ServedLog, ServedRows

    with tempfile.TemporaryDirectory() as tmp:
        log = ServedLog(tmp, capacity=answers + 1, flush_seconds=0.5)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(answers):
            items, scores = np.arange(candidates, dtype=np.int64), np.linspace(1, 0, candidates)
            log.put(
                ServedRows(
                    f"r{i}", 1_764_806_400_000_000, "2026-12-04", "d", i, "dacdr-d:v", "production", None,
                    False, items, scores, np.ones(candidates),
                )
            )  # fmt: skip
        log.close(timeout=300)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"# sink alone: {answers} answers x {candidates} rows, written {log.written}, "
        f"dropped {log.dropped}, {wall:.1f} s wall, {cpu / answers * 1e6:.0f} us process CPU per answer "
        f"(load avg {os.getloadavg()[0]:.2f})"
    )


def main() -> None:
    """Parse arguments, prepare, measure off vs on, print figures and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prepare_args(ap)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("--sink-only", action="store_true", help="only the log's own CPU (no model, no server)")
    args = ap.parse_args()
    if args.sink_only:
        sink_cost()
        return
    tags = prepared(args)
    queries = workload(tags["feast"], tags["domain"], 200, args.candidates, args.seed)
    print(f"# machine: {os.cpu_count()} cpus; load avg {os.getloadavg()[0]:.2f}; bento {tags['bento']}")
    tmp = Path(tempfile.mkdtemp(prefix="dacdr-served-log-"))
    results = []
    try:
        results.append(floor(tags, queries, args.seconds, args.max_requests))
        results.append(floor(tags, queries, args.seconds, args.max_requests, tmp / "floor"))
        print(f"# floor log: {rows_on_disk(tmp / 'floor')} rows on disk")
        answered = {"off": 0, "on": 0}
        for mode in ("off", "on"):
            extra = {"DACDR_SERVED_LOG_DIR": str(tmp / "server")} if mode == "on" else {}
            port = free_port()
            server = start_server(args.workdir, tags["bento"], port, extra)
            url = f"http://127.0.0.1:{port}"
            try:
                for route in ("/rank", "/rank_batch"):
                    warm = asyncio.run(drive(url, route, queries, 4, 2.0, 100))
                    answered[mode] += warm.requests - warm.errors
                    r = asyncio.run(
                        drive(url, route, queries, args.concurrency, args.seconds, args.max_requests)
                    )
                    r.name = f"{route} log {mode}"
                    results.append(r)
                    answered[mode] += r.requests - r.errors
            finally:
                stop_server(server)  # SIGTERM: the worker flushes its queue on shutdown
        on_disk = rows_on_disk(tmp / "server")
        print(f"# server log: {on_disk} rows on disk for {answered['on'] * args.candidates} served")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'run':<26}{'conc':>5}{'reqs':>7}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}  status")
    for r in results:
        print(
            f"{r.name:<26}{r.concurrency:>5}{r.requests:>7}{r.errors:>7}{r.rps:>9.1f}{r.p50_ms:>9.2f}"
            f"{r.p99_ms:>9.2f}  {r.status}"
        )
    by = {r.name: r for r in results}
    pairs = [("in-process", "in-process +log"), ("/rank log off", "/rank log on")]
    pairs.append(("/rank_batch log off", "/rank_batch log on"))
    for off, on in pairs:
        a, b = by[off], by[on]
        print(
            f"# {on}: p50 {b.p50_ms / a.p50_ms:.2f}x, p99 {b.p99_ms / a.p99_ms:.2f}x, "
            f"throughput {b.rps / a.rps:.2f}x of {off}"
        )


if __name__ == "__main__":
    main()
