"""In-process ranking floor: the product path beside the two it replaced, for 1, 10, 100 and 1000
candidates, in one run on one machine.

Every path starts from the same Ranker (same model, same Feast online store) and does the whole work
of one /rank query minus HTTP: the online read, tensorizing, the model.
- old: a frame of every (user, candidate) row, the model on all of them;
- split: the per-field service read, one user row tensorized through the frame path, the candidates
  scored against the user half (models.predict.predict_split);
- packed (product): one read of the packed view, straight to the user half's tensors
  (FeatureSpec.tensorize_users), then the same predict_split.
The per-field read alone is also timed, so the figures say where the time goes.

    .venv/bin/python benchmarks/scoring_path.py --workdir /tmp/bench_serving --preset demo
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed(fn, n: int) -> np.ndarray:  # noqa: ANN001 - a zero-argument callable
    """Milliseconds of `n` calls of fn (after one warm-up call)."""
    fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1000
    return out


def measure(ranker, qs: list, repeats: int) -> dict[str, np.ndarray]:  # noqa: ANN001 - a bento Ranker
    """Per-query milliseconds of the per-field read alone and of the old, split and packed paths."""
    import pyarrow as pa

    from bento.ranker import PREDICT_BATCH
    from features import contract as C
    from models.predict import predict, predict_split

    frame, _ = ranker.frame(qs[:1])  # both paths give the same scores before either is timed
    np.testing.assert_allclose(predict(ranker.model, ranker.spec, frame, device="cpu"),
                               ranker.predict(qs[:1])[0], rtol=1e-4, atol=1e-6)
    k = iter(range(10**9))

    def next_query() -> list:
        return [qs[next(k) % len(qs)]]

    def old() -> None:
        frame, _ = ranker.frame(next_query())
        predict(ranker.model, ranker.spec, frame, batch_size=PREDICT_BATCH, device="cpu")

    def split() -> None:
        q = next_query()
        utbl, owner, itbl, _ = ranker.read(q)
        first = np.unique(owner, return_index=True)[1]
        times = pa.array([q[0].event_time] * len(first), type=C.TIMESTAMP)
        users = ranker.spec.tensorize(ranker.join(utbl, owner[first], itbl.take(pa.array(first)), times))
        predict_split(ranker.model, users, ranker.spec.tensorize_items(itbl), owner)

    return {
        "read": timed(lambda: ranker.read(next_query()), repeats),
        "old": timed(old, repeats),
        "split": timed(split, repeats),
        "packed": timed(lambda: ranker.predict(next_query()), repeats),
    }


def main() -> None:
    """Prepare (as benchmarks/serving.py), then time both paths per candidate count."""
    from serving import add_prepare_args, prepared, workload

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prepare_args(ap)
    ap.add_argument("--candidates", default="1,10,100,1000")
    ap.add_argument("--repeats", type=int, default=200, help="timed queries per path and size")
    args = ap.parse_args()
    tags = prepared(args)

    import torch

    from bento.ranker import Query, Ranker

    ranker = Ranker.load(tags["domain"], tags["model"], tags["feast"])
    print(f"# machine: {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}; "
          f"load avg {os.getloadavg()[0]:.2f}; preset {args.preset}; model {tags['model']}")
    print(f"{'candidates':>10} {'path':>6} {'p50 ms':>8} {'p99 ms':>8} {'read ms':>8} {'model ms':>9}")
    for n in [int(c) for c in args.candidates.split(",")]:
        picked = workload(tags["feast"], tags["domain"], 50, n, args.seed)
        t = measure(ranker, [Query.of(q["user_id"], q["item_ids"]) for q in picked], args.repeats)
        read = np.percentile(t["read"], 50)
        for name in ("old", "split", "packed"):
            p50, p99 = np.percentile(t[name], 50), np.percentile(t[name], 99)
            print(f"{n:>10} {name:>6} {p50:8.2f} {p99:8.2f} {read:8.2f} {p50 - read:9.2f}")
        ratio = np.percentile(t["old"], 50) / np.percentile(t["packed"], 50)
        print(f"{n:>10} {'ratio':>6} {ratio:8.1f}x old/packed")
    print(f"# load avg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
