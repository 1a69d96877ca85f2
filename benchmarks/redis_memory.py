"""Benchmark: Redis memory per user of the online store, split into a per-element and a per-user cost.

Usage: .venv/bin/python -W ignore benchmarks/redis_memory.py [--preset tiny] [--max-len 10 --max-len 50]

For each max_len: a fresh redis-server (no persistence), `dacdr features build --online redis`,
apply, materialize, and Redis's used_memory before and after. Two max_len values give two points of
bytes = per_user * users + per_element * elements, solved for both (docs/scale-out.md sizes Redis
for 500 M users with them). Needs a `redis-server` binary.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from dacdr.processes import free_port


def measure(logs: Path, workdir: Path, max_len: int) -> tuple[int, int, int]:
    """(redis bytes, users, sequence elements) of one materialization at `max_len`."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import redis
    from typer.testing import CliRunner

    from dacdr.cli import app
    from features import contract as C
    from features.sequences import sequence_columns
    from features.store import data_dir

    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(50):  # up within a few hundred ms
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        url = f"redis://127.0.0.1:{port}/0"
        for args in (["features", "build", "--logs", str(logs), "--workdir", str(workdir), "--max-len",
                      str(max_len), "--online", "redis", "--redis-url", url],
                     ["features", "apply", "--workdir", str(workdir)]):
            res = CliRunner().invoke(app, args)
            assert res.exit_code == 0, res.output
        before = client.info("memory")["used_memory"]
        res = CliRunner().invoke(app, ["features", "materialize", "--workdir", str(workdir)])
        assert res.exit_code == 0, res.output
        used = client.info("memory")["used_memory"] - before
    finally:
        server.terminate()
        server.wait()
    snaps = pq.read_table(data_dir(workdir) / "user_sequences.parquet")
    # the online store holds each user's latest snapshot: the last row per user in time order
    snaps = snaps.sort_by([(C.USER_ID, "ascending"), (C.SNAPSHOT_TIME, "ascending")])
    users = snaps[C.USER_ID].to_numpy()
    last = snaps.take(np.flatnonzero(np.append(users[1:], -1) != users))
    elements = sum(int(pc.sum(pc.list_value_length(last[c])).as_py() or 0) for c in sequence_columns())
    return used, last.num_rows, elements


def main() -> None:
    """Measure at each max_len and solve for the per-user and per-element costs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="tiny", help="simulator preset")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--max-len", type=int, action="append", help="two sequence lengths (default 10, 50)")
    args = parser.parse_args()
    from features.simulator import simulate

    root = Path(tempfile.mkdtemp(prefix="redis_memory_"))
    simulate(args.preset, seed=args.seed, out=root / "logs")
    try:
        points = [measure(root / "logs", root / f"w{m}", m) for m in args.max_len or [10, 50]]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for m, (used, users, elements) in zip(args.max_len or [10, 50], points, strict=True):
        print(f"max_len {m}: {used:,} bytes, {users:,} users, {elements / users:.1f} elements/user")
    (b0, _, e0), (b1, users, e1) = points[0], points[-1]
    per_element = (b1 - b0) / (e1 - e0)
    # items and domains share the fixed part: an upper bound per user
    per_user = (b0 - per_element * e0) / users
    print(f"per sequence element: {per_element:.2f} bytes; fixed per user (<=): {per_user:,.0f} bytes")
    print(f"a user with 30 x 50 elements: {(1500 * per_element + per_user) / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
