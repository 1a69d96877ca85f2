"""Vectorised numpy metrics: AUC (ties averaged), expected AUC, GAUC, logloss, MAE, RMSE."""

from __future__ import annotations

import numpy as np


def _tie_average_ranks(sorted_keys: list[np.ndarray]) -> np.ndarray:
    """1-based ranks of already-sorted rows, ties (rows equal on every key) getting their average rank."""
    n = len(sorted_keys[0])
    change = np.ones(n, dtype=bool)
    if n > 1:
        change[1:] = np.logical_or.reduce([k[1:] != k[:-1] for k in sorted_keys])
    group = np.cumsum(change) - 1
    first = np.flatnonzero(change)  # 0-based start of each tie group
    counts = np.diff(np.append(first, n))
    avg = first + (counts + 1) / 2.0  # mean of 1-based positions first+1 .. first+count
    return avg[group]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney with average ranks for ties); NaN when only one class is present."""
    y = np.asarray(labels, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    if len(y) != len(s):
        raise ValueError(f"labels ({len(y)}) and scores ({len(s)}) differ in length")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = _tie_average_ranks([s[order]])
    r_pos = ranks[y[order]].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_auc(p: np.ndarray, scores: np.ndarray | None = None) -> float:
    """AUC of `scores` (default: p itself) against labels ~ Bernoulli(p), without sampling noise."""
    p = np.asarray(p, dtype=np.float64)
    s = p if scores is None else np.asarray(scores)
    uniq, inv = np.unique(s, return_inverse=True)
    pos = np.bincount(inv, weights=p, minlength=len(uniq))  # expected positives per score value
    neg = np.bincount(inv, weights=1 - p, minlength=len(uniq))
    neg_below = np.cumsum(neg) - neg
    wins = (pos * neg_below).sum() + 0.5 * (pos * neg).sum() - 0.5 * (p * (1 - p)).sum()  # no self-pairs
    total = pos.sum() * neg.sum() - (p * (1 - p)).sum()
    return float(wins / total)


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Per-user AUC averaged with impression weights over users that have both classes; NaN if none."""
    u = np.asarray(users)
    y = np.asarray(labels, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    if not (len(u) == len(y) == len(s)):
        raise ValueError("users, labels and scores must have the same length")
    if len(u) == 0:
        return float("nan")
    _, uid = np.unique(u, return_inverse=True)
    order = np.lexsort((s, uid))
    uo, so, yo = uid[order], s[order], y[order]
    n_u = np.bincount(uo)
    start = np.cumsum(n_u) - n_u
    # global tie-averaged ranks of (user, score) minus the user's offset = rank within the user
    ranks = _tie_average_ranks([uo, so]) - start[uo]
    p_u = np.bincount(uo, weights=yo.astype(np.float64), minlength=len(n_u))
    r_u = np.bincount(uo, weights=np.where(yo, ranks, 0.0), minlength=len(n_u))
    q_u = n_u - p_u
    ok = (p_u > 0) & (q_u > 0)
    if not ok.any():
        return float("nan")
    auc_u = (r_u[ok] - p_u[ok] * (p_u[ok] + 1) / 2.0) / (p_u[ok] * q_u[ok])
    return float(np.average(auc_u, weights=n_u[ok]))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1-eps])."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def mae(labels: np.ndarray, preds: np.ndarray) -> float:
    """Mean absolute error."""
    d = np.asarray(labels, dtype=np.float64) - np.asarray(preds, dtype=np.float64)
    return float(np.mean(np.abs(d))) if len(d) else float("nan")


def rmse(labels: np.ndarray, preds: np.ndarray) -> float:
    """Root mean squared error."""
    d = np.asarray(labels, dtype=np.float64) - np.asarray(preds, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d))) if len(d) else float("nan")
