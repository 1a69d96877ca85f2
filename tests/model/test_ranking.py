"""Leave-last-out pieces against brute force: the positive's rank, NDCG@10 / HR@10, the per-user split,
and implicit source examples (negatives never the user's own clicks, only items that exist by then)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract as C
from models.experiments.data import implicit_examples
from models.experiments.sequential import ndcg_hr, positive_rank, split_leave_last_out


def test_positive_rank_matches_a_loop() -> None:
    """1 + negatives scored above the positive + half the ties, per request (per-row loop, on purpose)."""
    rng = np.random.default_rng(0)
    req = np.repeat(np.array(["b", "a", "c"]), 6)
    labels = np.tile([1.0, 0, 0, 0, 0, 0], 3)
    scores = rng.integers(0, 4, len(req)).astype(float)  # many ties
    expect = {}
    for r in np.unique(req):
        m = req == r
        pos = scores[m][labels[m] == 1][0]
        neg = scores[m][labels[m] == 0]
        expect[r] = 1 + (neg > pos).sum() + 0.5 * (neg == pos).sum()
    np.testing.assert_allclose(positive_rank(req, labels, scores), [expect[r] for r in sorted(expect)])
    ndcg, hr = ndcg_hr(np.array([1.0, 10.0, 11.0]))
    np.testing.assert_allclose(ndcg, [1.0, 1 / np.log2(11), 0.0])
    np.testing.assert_allclose(hr, [1.0, 1.0, 0.0])


def test_split_takes_each_users_last_request_for_test() -> None:
    """Last request by time: test; the one before: validation; earlier: train; rows follow their request."""
    t = pd.to_datetime([5, 1, 3, 2, 2, 9], unit="D", utc=True)
    table = pd.DataFrame({C.REQUEST_ID: ["u1c", "u1a", "u1b", "u2a", "u2a", "u2b"],
                          C.USER_ID: [1, 1, 1, 2, 2, 2], C.EVENT_TIME: t})
    assert split_leave_last_out(table).tolist() == ["test", "train", "validation", "validation",
                                                    "validation", "test"]


def test_implicit_source_examples_sample_available_unseen_items() -> None:
    """Each click is a positive with 3 negatives at its time, none the user clicked, none not yet seen."""
    rng = np.random.default_rng(1)
    n = 300
    clicks = pd.DataFrame({C.EVENT_TIME: pd.to_datetime(rng.integers(0, 50, n), unit="D", utc=True),
                           C.USER_ID: rng.integers(0, 20, n), C.ITEM_ID: rng.integers(0, 60, n)})
    out = implicit_examples(clicks, negatives=3, seed=0)
    pos, neg = out[out[C.LABEL] == 1], out[out[C.LABEL] == 0]
    assert len(pos) == n and 0 < len(neg) <= 3 * n
    own = set(zip(clicks[C.USER_ID], clicks[C.ITEM_ID], strict=True))
    assert not any((u, i) in own for u, i in zip(neg[C.USER_ID], neg[C.ITEM_ID], strict=True))
    first = clicks.groupby(C.ITEM_ID)[C.EVENT_TIME].min()
    assert (first.reindex(neg[C.ITEM_ID]).to_numpy() <= neg[C.EVENT_TIME].to_numpy()).all()
