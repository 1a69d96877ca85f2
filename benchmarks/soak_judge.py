"""benchmarks/soak.py's judge: what each store should answer, and which answers were wrong when.

A wrong answer is a 200 whose (item, score) pairs or cold_start flag are not those of the store
current at its time; requests in flight across the fault may carry either store (or be cold,
while a restarted store is empty). Pure numpy; tests/code/test_soak_judge.py plants stale answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Reference:
    """Expected answers per query of the workload: item ids sorted, their scores, cold flag."""

    items: list[np.ndarray]
    scores: list[np.ndarray]
    cold: np.ndarray

    @classmethod
    def of(cls, tags: dict[str, str], feast: Path, queries: list[dict]) -> Reference:
        """Score every query in-process over the store of `feast` (the path /rank takes, minus HTTP)."""
        from bento.ranker import Query, Ranker

        ranker = Ranker.load(tags["domain"], tags["model"], feast)
        items, scores, cold = [], [], []
        for q in queries:
            (s,), (c,) = ranker.score([Query.of(q["user_id"], q["item_ids"])])
            order = np.argsort(q["item_ids"])
            items.append(np.asarray(q["item_ids"], dtype=np.int64)[order])
            scores.append(np.asarray(s, dtype=np.float64)[order])
            cold.append(c)
        return cls(items, scores, np.array(cold))

    def matches(self, k: int, items: np.ndarray, scores: np.ndarray, cold: bool) -> bool:
        """Whether an answer (ranked item ids and scores, cold flag) to query k is this store's."""
        order = np.argsort(items)
        return (
            bool(cold) == bool(self.cold[k])
            and np.array_equal(items[order], self.items[k])
            and np.allclose(scores[order], self.scores[k], rtol=1e-5, atol=1e-6)
        )


def judge(
    t_send: np.ndarray, t_done: np.ndarray, ok: np.ndarray, before: np.ndarray, after: np.ndarray,
    cold: np.ndarray, warm: tuple[np.ndarray, np.ndarray], window: tuple[float, float], grace_s: float,
) -> dict[str, int]:
    """Classify answers (vectorised). Before the window only the old store's answer is right, after
    it (plus grace) only the new one's; a request overlapping it may carry either, or be cold
    (the store emptied: Redis), or fail. `before`/`after`: the answer matched that store;
    `cold`: the answer said cold_start; `warm`: the user has a history in the (old, new) store."""
    start, end = window
    pre, post = t_done <= start, t_send >= end + grace_s
    mid = ~pre & ~post
    wrong = ok & ((pre & ~before) | (post & ~after) | (mid & ~before & ~after & ~cold))
    return {
        "answers": int(ok.sum()),
        "wrong": int(wrong.sum()),
        "wrong_before": int((wrong & pre).sum()),
        "wrong_after": int((wrong & post).sum()),
        "stale_after": int((ok & post & ~after & before).sum()),
        "silent_cold_starts": int((ok & cold & ((pre & warm[0]) | (post & warm[1]))).sum()),
        "cold_in_window": int((ok & mid & cold & ~before & ~after).sum()),
        "old_in_window": int((ok & mid & before & ~after).sum()),
        "errors": int((~ok).sum()),
        "errors_outside_window": int((~ok & ~mid).sum()),
        "wrong_sent_at_s": np.round(t_send[wrong][[0, -1]] - start, 2).tolist() if wrong.any() else None,
    }


@dataclass
class Log:
    """Per-request records of the soak: (sent, done, ok, matched old, matched new, cold, query index)."""

    rows: list[tuple[float, float, bool, bool, bool, bool, int]] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    served_items: int = 0

    def columns(self) -> tuple[np.ndarray, ...]:
        """The records as one array per field."""
        cols = np.array(self.rows, dtype=np.float64).reshape(-1, 7).T
        return cols[0], cols[1], *(c.astype(bool) for c in cols[2:6]), cols[6].astype(np.int64)
