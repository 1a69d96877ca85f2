"""Onboarding a new domain: fine-tuning the base DACDR (paper 3.5) vs training DACDR from scratch.

For each seed: `finetune(base, domain, data)` and `train(data)` on the same onboarding dataset, both
scored on its test split. Prints per-seed test AUC, the mean difference, its standard error over seeds
and a paired bootstrap standard error over test users (seeded), so "beats from scratch by > 2 s.e."
can be read off directly.

    python benchmarks/onboarding.py --base RUN_DIR --data ONBOARD_DATASET --domain beauty_launch \
        --seeds 3 --out /tmp/onboarding --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    """Run both arms per seed and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="Trained base DACDR run dir.")
    ap.add_argument("--data", type=Path, required=True, help="Onboarding dataset dir.")
    ap.add_argument("--domain", required=True, help="The new target domain.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1, help="torch/BLAS threads of this process.")
    args = ap.parse_args()

    from dacdr.threads import configure

    configure(args.threads)
    import pyarrow.parquet as pq
    import torch

    from models.checkpoint import load_checkpoint
    from models.experiments.significance import paired_auc_bootstrap
    from models.finetune import finetune
    from models.metrics import auc
    from models.predict import predict
    from models.run import train

    test = pq.read_table(args.data / "test.parquet")
    labels = test.column("label").to_numpy()
    users = test.column("user_id").to_numpy()
    rows = []
    for seed in range(args.seeds):
        preds = {}
        for arm in ("finetune", "scratch"):
            out = args.out / f"{arm}_seed{seed}"
            t0 = time.perf_counter()
            if arm == "finetune":
                finetune(args.base, args.domain, args.data, out, epochs=args.epochs, seed=seed, device="cpu",
                         batch_size=args.batch_size, progress=False)
            else:
                train(args.data, out, model="dacdr", device="cpu", seed=seed, epochs=args.epochs,
                      batch_size=args.batch_size, patience=2, progress=False)
            wall = time.perf_counter() - t0
            model, spec, _ = load_checkpoint(out / "checkpoint.pt", "cpu")
            preds[arm] = predict(model, spec, test, device=torch.device("cpu"))
            rows.append({"seed": seed, "arm": arm, "auc": auc(labels, preds[arm]), "seconds": round(wall, 1)})
            print(json.dumps(rows[-1]), flush=True)
        se = paired_auc_bootstrap(labels, users, preds["finetune"], preds["scratch"])[3]
        print(json.dumps({"seed": seed, "diff": rows[-2]["auc"] - rows[-1]["auc"], "bootstrap_se": se}))
    ft = np.array([r["auc"] for r in rows if r["arm"] == "finetune"])
    sc = np.array([r["auc"] for r in rows if r["arm"] == "scratch"])
    d = ft - sc
    se_seeds = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    print(f"# machine: {os.cpu_count()} cpus; load avg {os.getloadavg()[0]:.2f}; test rows {len(labels)}, "
          f"clicks {int(labels.sum())}")
    print(f"fine-tune AUC {ft.mean():.4f} ± {ft.std(ddof=1) if len(ft) > 1 else 0:.4f}, "
          f"scratch {sc.mean():.4f} ± {sc.std(ddof=1) if len(sc) > 1 else 0:.4f}; "
          f"mean difference {d.mean():+.4f}, s.e. over seeds {se_seeds:.4f} "
          f"({d.mean() / se_seeds if se_seeds > 0 else float('nan'):.1f} s.e.)")


if __name__ == "__main__":
    main()
