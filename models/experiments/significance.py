"""Paired bootstrap over test users: is model A's mean-over-domains test AUC above model B's?

Reads what `dacdr experiment multidomain` leaves in its out dir (predictions/test_rows.parquet and
predictions/<model>_seed<k>.npy, one score per test row). Runs on the same zone share their test rows,
so several out dirs can be compared (e.g. a run with --burn-in-days against one without).

Each draw gives every test user a Poisson(1) weight (the bootstrap over users, paired: both models
see the same weights), computes each domain's weighted AUC for both models, and takes the difference
of the means over domains, averaged over the seeds both models ran. The s.e. is the s.d. of the draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    """ROC AUC with row weights (ties count half); equals metrics.auc when every weight is 1."""
    y = np.asarray(labels) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w_pos, w_neg = w[y].sum(), w[~y].sum()
    if w_pos == 0 or w_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    neg = np.where(y, 0.0, w)
    # per tie group of equal scores: negative weight strictly below, and within the group
    start = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    neg_in_group = np.add.reduceat(neg, start)
    below = np.cumsum(neg_in_group) - neg_in_group
    credit = below[group] + 0.5 * neg_in_group[group]
    return float((w * y * credit).sum() / (w_pos * w_neg))


def paired_auc_bootstrap(
    labels: np.ndarray, users: np.ndarray, a: np.ndarray, b: np.ndarray, draws: int = 200, seed: int = 0
) -> tuple[float, float, float, float]:
    """(AUC a, AUC b, a - b, s.e. of a - b) on one set of rows: Poisson(1) weights per user, paired."""
    _, user_idx = np.unique(np.asarray(users), return_inverse=True)
    rng = np.random.default_rng(seed)
    ones = np.ones(len(labels))
    auc_a, auc_b = weighted_auc(labels, a, ones), weighted_auc(labels, b, ones)
    diffs = []
    for _ in range(draws):
        w = rng.poisson(1.0, user_idx.max() + 1)[user_idx].astype(np.float64)
        diffs.append(weighted_auc(labels, a, w) - weighted_auc(labels, b, w))
    d = np.asarray(diffs)
    d = d[np.isfinite(d)]
    se = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    return auc_a, auc_b, auc_a - auc_b, se


@dataclass(frozen=True)
class Comparison:
    """A - B in mean-over-domains test AUC: point estimate, bootstrap s.e., the seeds used."""

    a: str
    b: str
    diff: float
    se: float
    seeds: list[int]

    def line(self) -> str:
        """One Markdown list line."""
        z = self.diff / self.se if self.se > 0 else float("inf")
        return (f"- {self.a} - {self.b}: {self.diff:+.4f} (s.e. {self.se:.4f}, {z:+.1f} s.e.; "
                f"seeds {self.seeds})")


def _predictions(dirs: list[Path]) -> dict[str, dict[int, np.ndarray]]:
    """model -> seed -> test-row scores, from every dir's predictions/ (later dirs win on a clash)."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for d in dirs:
        for f in sorted((d / "predictions").glob("*_seed*.npy")):
            name, _, seed = f.stem.rpartition("_seed")
            out.setdefault(name, {})[int(seed)] = np.load(f, allow_pickle=False)
    return out


def compare(dirs: list[Path], reference: str, draws: int = 100, seed: int = 0) -> list[Comparison]:
    """Every other model of `dirs` against `reference` (paired bootstrap over test users)."""
    import pyarrow.parquet as pq

    from features import contract as C

    dirs = [Path(d) for d in dirs]
    cols = [C.USER_ID, C.DOMAIN, C.LABEL]
    test = pq.read_table(dirs[0] / "predictions" / "test_rows.parquet", columns=cols)
    for d in dirs[1:]:
        other = pq.read_table(d / "predictions" / "test_rows.parquet", columns=cols)
        if not other.equals(test):
            raise ValueError(f"{d} has other test rows than {dirs[0]}: compare runs on the same zone only")
    preds = _predictions(dirs)
    if reference not in preds:
        raise ValueError(f"no predictions of {reference!r} in {[str(d) for d in dirs]}")
    labels = test.column(C.LABEL).to_numpy()
    _, user_idx = np.unique(test.column(C.USER_ID).to_numpy(), return_inverse=True)
    domains = test.column(C.DOMAIN).to_numpy(zero_copy_only=False).astype(str)
    masks = [domains == d for d in np.unique(domains)]
    rng = np.random.default_rng(seed)
    weights = [np.ones(len(labels))] + [rng.poisson(1.0, user_idx.max() + 1)[user_idx] for _ in range(draws)]

    def mean_auc(scores: np.ndarray, w: np.ndarray) -> float:
        return float(np.mean([weighted_auc(labels[m], scores[m], w[m]) for m in masks]))

    out = []
    for name in sorted(preds):
        seeds = sorted(set(preds[name]) & set(preds[reference]))
        if name == reference or not seeds:
            continue
        diffs = np.array([
            np.mean([mean_auc(preds[name][s], w) - mean_auc(preds[reference][s], w) for s in seeds])
            for w in weights
        ])
        out.append(Comparison(name, reference, float(diffs[0]), float(diffs[1:].std(ddof=1)), seeds))
    return out
