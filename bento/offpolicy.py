"""Estimate a candidate's online CTR from production's logs with exploration, before it gets traffic.

Production answers a share epsilon of requests in a uniformly random order and logs each shown
item's propensity: the probability that the logging policy put that item at the position it was
shown, epsilon/n + (1-epsilon) * [position == production's own rank]. Under the position-based
click model (examination by position times attractiveness, features/simulator/clicks.py), a row
where the candidate would show the item at the very position it was logged at has expected
click / propensity equal to the candidate's click probability there, so

    IPS   = sum_rows w * click / impressions,      w = [logged position == candidate's rank] / propensity
    SNIPS = sum_rows w * click / sum_rows w        (self-normalised: lower variance, small bias)

both estimate the candidate's CTR (clicks per shown item, every request showing all its n items).
Intervals are delta-method over users (bento.ab.ratio_and_variance), as the A/B report's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa

from bento.ab import ratio_and_variance
from features import contract as C
from features.served import POSITION, PROPENSITY


@dataclass(frozen=True)
class OffPolicyEstimate:
    """IPS and SNIPS estimates of a candidate's CTR, with intervals, and how many rows matched."""

    ips: float
    ips_low: float
    ips_high: float
    snips: float
    snips_low: float
    snips_high: float
    rows: int
    matched: int
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def candidate_ranks(request_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """1-based rank of each row within its request by descending candidate score (ties: row order)."""
    _, req = np.unique(np.asarray(request_ids).astype(str), return_inverse=True)
    order = np.lexsort((np.arange(len(req)), -np.asarray(scores, np.float64), req))
    sorted_req = req[order]
    start = np.r_[0, np.flatnonzero(sorted_req[1:] != sorted_req[:-1]) + 1]
    first = np.repeat(start, np.diff(np.r_[start, len(order)]))
    ranks = np.empty(len(order), np.int64)
    ranks[order] = np.arange(len(order)) - first + 1
    return ranks


def off_policy_ctr(logged: pa.Table, candidate_scores: np.ndarray, alpha: float = 0.05) -> OffPolicyEstimate:
    """IPS/SNIPS of the candidate's CTR from logged production rows (`join_clicks` output, one arm).

    `candidate_scores` are the candidate's scores of the logged rows, in row order.
    """
    prop = logged.column(PROPENSITY).to_numpy(zero_copy_only=False).astype(np.float64)
    if np.isnan(prop).any() or (prop <= 0).any():
        raise ValueError("logged rows need a positive propensity: log production with exploration > 0")
    ranks = candidate_ranks(logged.column(C.REQUEST_ID).to_numpy(zero_copy_only=False), candidate_scores)
    match = ranks == logged.column(POSITION).to_numpy()
    w = match / prop
    click = logged.column(C.LABEL).to_numpy().astype(np.float64)
    _, user = np.unique(logged.column(C.USER_ID).to_numpy(), return_inverse=True)
    wc = np.bincount(user, weights=w * click)
    rows = np.bincount(user).astype(np.float64)
    wsum = np.bincount(user, weights=w)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    ips, v_ips = ratio_and_variance(wc, rows)
    snips, v_snips = ratio_and_variance(wc, wsum)
    h_ips, h_snips = z * math.sqrt(v_ips), z * math.sqrt(v_snips)
    return OffPolicyEstimate(ips, ips - h_ips, ips + h_ips, snips, snips - h_snips, snips + h_snips,
                             len(match), int(match.sum()), alpha)
