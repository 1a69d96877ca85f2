"""Benchmark `validate_day` on big synthetic days: rows/s and peak RSS for 1M and 10M impressions.

Each size is generated into a temp landing zone (vectorised, ~0.1 % bad rows so quarantine is
exercised), then validated in a fresh subprocess so its peak RSS is the validation's alone.

    .venv/bin/python benchmarks/validate.py                 # 1M and 10M
    .venv/bin/python benchmarks/validate.py --sizes 1000000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

DT = "2026-09-01"
N_ITEMS = 200_000
N_BEHAVIORS = 1_000_000
FILE_ROWS = 1_000_000  # rows per landing parquet file (a producer writes many files per day)


def generate(root: Path, n: int, seed: int) -> None:
    """Write domains, items, `n` impressions and N_BEHAVIORS behaviours of day DT under `root`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from features import contract as C
    from features.io import write_table

    rng = np.random.default_rng(seed)
    domains = pa.table(
        {
            C.DOMAIN: ["central", "fashion", "stars"],
            C.ROLE: [C.ROLE_SOURCE, C.ROLE_TARGET, C.ROLE_TARGET],
            C.TASK: [C.TASK_CTR, C.TASK_CTR, C.TASK_RATING],
        }
    )
    write_table(domains, root / C.DOMAINS / "domains.parquet")
    items = pa.table(
        {
            C.ITEM_ID: np.arange(N_ITEMS, dtype=np.int64),
            C.CATEGORY_ID: rng.integers(0, 64, N_ITEMS),
            C.BRAND_ID: rng.integers(0, 8000, N_ITEMS),
            C.SHOP_ID: rng.integers(0, 3000, N_ITEMS),
            C.PRICE: rng.uniform(1, 500, N_ITEMS),
        }
    )
    write_table(items, root / C.ITEMS / "items.parquet")
    start = np.datetime64(f"{DT}T00:00:00", "us").astype(np.int64)
    day_us = 86_400 * 10**6
    for part, lo in enumerate(range(0, n, FILE_ROWS)):
        m = min(FILE_ROWS, n - lo)
        rows = np.arange(lo, lo + m)
        is_rating = rng.random(m) < 0.3
        label = np.where(is_rating, rng.integers(1, 6, m), rng.random(m) < 0.05).astype(float)
        label[rng.random(m) < 0.001] = 9.0  # ~0.1 % bad labels -> quarantine
        tbl = pa.table(
            {
                C.EVENT_TIME: pa.array(start + np.sort(rng.integers(0, day_us, m)), C.TIMESTAMP),
                C.REQUEST_ID: pc.cast(pa.array(rows // 8), pa.string()),
                C.DOMAIN: pa.array(np.where(is_rating, "stars", "fashion")),
                C.USER_ID: rng.integers(0, 1_000_000, m),
                C.ITEM_ID: rows % N_ITEMS,  # unique (request_id, item_id)
                C.LABEL: label,
            }
        )
        write_table(tbl, C.partition_dir(root, C.IMPRESSIONS, DT) / f"part-{part:04d}.parquet")
    kinds = np.array(C.BEHAVIOR_TYPES[:4])
    beh = pa.table(
        {
            C.EVENT_TIME: pa.array(start + np.sort(rng.integers(0, day_us, N_BEHAVIORS)), C.TIMESTAMP),
            C.DOMAIN: pa.array(np.full(N_BEHAVIORS, "central")),
            C.USER_ID: rng.integers(0, 1_000_000, N_BEHAVIORS),
            C.ITEM_ID: rng.integers(0, N_ITEMS, N_BEHAVIORS),
            C.BEHAVIOR: pa.array(kinds[rng.integers(0, 4, N_BEHAVIORS)]),
            C.VALUE: pa.nulls(N_BEHAVIORS, pa.float64()),
        }
    )
    write_table(beh, C.partition_dir(root, C.BEHAVIORS, DT) / "part-0000.parquet")


def child(logs: Path, out: Path) -> None:
    """Validate DT once and print timings + peak RSS as JSON (run in its own process)."""
    t0 = time.perf_counter()
    import great_expectations  # noqa: F401  (a one-off ~3-10 s per process; not part of the day's cost)

    from features.validation import validate_day

    import_s = time.perf_counter() - t0
    now = datetime.fromisoformat(DT).replace(tzinfo=UTC) + timedelta(days=1, hours=1)
    t1, c1 = time.perf_counter(), time.process_time()
    summary = validate_day(logs, DT, out, now=now)
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    tables = {k: {"read": v.read, "quarantined": v.quarantined} for k, v in summary.tables.items()}
    res = {"wall_s": wall, "cpu_s": cpu, "import_s": import_s, "peak_rss_gib": rss_gib, "tables": tables}
    print(json.dumps(res))


def main() -> None:
    """Generate and validate each size; print a table of rows/s and peak RSS."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=2, metavar=("LOGS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return
    print(
        f"{'impressions':>12} {'all rows':>10} {'wall s':>8} {'imp rows/s':>12} {'all rows/s':>12} "
        f"{'peak RSS':>9} {'import s':>8} {'cpu s':>7}"
    )
    # a shared machine inflates wall time; CPU seconds (all threads) and the load show by how much
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="dacdr-bench-validate-") as tmp:
            logs, out = Path(tmp) / "logs", Path(tmp) / "out"
            generate(logs, n, args.seed)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(logs), str(out)],
                check=True,
                capture_output=True,
                text=True,
            )
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        total = sum(t["read"] for t in res["tables"].values())
        imp = res["tables"]["impressions"]
        assert imp["read"] == n, f"read {imp['read']} impressions, generated {n}"
        print(
            f"{n:>12,} {total:>10,} {res['wall_s']:>8.1f} {n / res['wall_s']:>12,.0f} "
            f"{total / res['wall_s']:>12,.0f} {res['peak_rss_gib']:>7.2f} G "
            f"{res['import_s']:>8.1f} {res['cpu_s']:>7.1f}"
            f"   (quarantined {imp['quarantined']:,} impressions)"
        )


if __name__ == "__main__":
    main()
