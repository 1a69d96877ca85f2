"""Markdown tables for docs/results.md from experiment result folders (mean ± s.e. over seeds).

    python scripts/results_tables.py coldstart RUN [RUN ...]   # dacdr experiment coldstart outputs
    python scripts/results_tables.py ranking RUN [RUN ...]     # dacdr experiment ranking outputs

Several folders of one data set are concatenated (e.g. the zoo run and an ablation run); RUN:SUFFIX appends
SUFFIX to that run's model names, RUN:SUFFIX:PREFIX only to those starting with PREFIX (two runs of one
model under different settings). Closed-form rows
come first. Cold-start also prints each model minus `bias`, paired by (beta, seed) split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

CLOSED_FORM = ("item_mean", "bias", "popularity")


def _cell(x: pd.Series) -> str:
    """mean ± s.e. over seeds."""
    se = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return f"{x.mean():.4f} ± {se:.4f}"


def _read(runs: list[str]) -> pd.DataFrame:
    """results.csv of every RUN[:SUFFIX], model names suffixed."""
    frames = []
    for spec in runs:
        path, suffix, prefix = (spec.split(":") + ["", ""])[:3]
        df = pd.read_csv(Path(path) / "results.csv")
        hit = df["model"].str.startswith(prefix)
        frames.append(df.assign(model=df["model"].where(~hit, df["model"] + suffix)))
    return pd.concat(frames, ignore_index=True)


def _order(models: list[str]) -> list[str]:
    """Closed-form rows first, then the rest in run order."""
    return [m for m in CLOSED_FORM if m in models] + [m for m in models if m not in CLOSED_FORM]


def coldstart(runs: list[str]) -> str:
    """RMSE per model and beta, and the paired difference to `bias`."""
    df = _read(runs)
    betas = sorted(df["beta"].unique())
    lines = ["| model | " + " | ".join(f"RMSE β={b:g}" for b in betas) + " | " +
             " | ".join(f"− bias β={b:g}" for b in betas) + " |", "|---|" + "---|" * 2 * len(betas)]
    ref = df[df["model"] == "bias"].set_index(["beta", "seed"])["rmse"]
    for m in _order(list(dict.fromkeys(df["model"]))):
        own = df[df["model"] == m]
        cells = [_cell(own.loc[own["beta"] == b, "rmse"]) for b in betas]
        diffs = []
        for b in betas:
            d = own[own["beta"] == b].set_index(["beta", "seed"])["rmse"] - ref
            d = d.dropna()
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            diffs.append("–" if m == "bias" or d.empty else f"{d.mean():+.4f} ± {se:.4f}")
        lines.append(f"| {m} | " + " | ".join(cells + diffs) + " |")
    return "\n".join(lines)


def ranking(runs: list[str]) -> str:
    """AUC, GAUC, NDCG@10, HR@10 per model."""
    df = _read(runs)
    lines = ["| model | AUC | GAUC | NDCG@10 | HR@10 |", "|---|---|---|---|---|"]
    for m in _order(list(dict.fromkeys(df["model"]))):
        own = df[df["model"] == m]
        cells = [_cell(own[c]) for c in ("auc", "gauc", "ndcg10", "hr10")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    kind, dirs = sys.argv[1], sys.argv[2:]
    if kind not in ("coldstart", "ranking") or not dirs:
        sys.exit("usage: results_tables.py coldstart|ranking RUN [RUN ...]")
    print(coldstart(dirs) if kind == "coldstart" else ranking(dirs))
