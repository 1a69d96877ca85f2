"""In-process A/B arms over the simulated world: what the service does with an experiment, without HTTP.

Used to plant arms of known quality (tests, the A/A check, the online table's ceiling rows) and to
check the report against the truth. Assignment (features.served.assign_arms), exploration and
propensities follow the service's contract: a request is answered, with probability epsilon, in a
uniformly random order; propensity = epsilon/n + (1-epsilon) * [position == the arm's own score rank].
Shadow arms score every request and are logged (position = their own rank) but never shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features import contract as C
from features.served import SERVED_SCHEMA, assign_arms
from features.simulator.tables import _ts
from features.simulator.traffic import Requests
from features.simulator.world import ITEM_ID_BASE, USER_ID_BASE, LatentState, _rng, click_logit

ARMS_STREAM = 9
# scores of (R,) user indices x (R, K) item indices -> (R, K)
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SimArm:
    """One arm: its name, the model tag it stands for, traffic share, mode and scorer."""

    name: str
    model_tag: str
    share: float
    scorer: Scorer
    mode: str = "live"  # live | shadow


def true_scorer(state: LatentState, domain: str, noise: float = 0.0, seed: int = 0) -> Scorer:
    """The true click logit plus fixed Gaussian noise per (user, item) (noise 0: the oracle ranker)."""

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        flat_users = np.repeat(users, items.shape[1])
        logit = click_logit(state, domain, flat_users, items.ravel()).reshape(items.shape)
        if noise <= 0:
            return logit
        # noise keyed by (user, item): the same pair gets the same error in every request
        pair = users[:, None].astype(np.uint64) * np.uint64(state.cfg.n_items) + items.astype(np.uint64)
        u1, u2 = _uniform(pair, 2 * seed + 1), _uniform(pair, 2 * seed + 2)
        return logit + noise * np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)  # Box-Muller

    return score


def _uniform(keys: np.ndarray, salt: int) -> np.ndarray:
    """A uniform in (0, 1) per uint64 key (splitmix64 finaliser): counter-based, no state."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def random_scorer(seed: int) -> Scorer:
    """Uniform random scores (a ranker that knows nothing)."""

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _rng(seed, ARMS_STREAM, 1, int(users.sum() % 2**31)).random(items.shape)

    return score


def popularity_scorer(state: LatentState) -> Scorer:
    """The items' popularity weight (the `popularity` baseline's ranking)."""
    return lambda users, items: np.broadcast_to(np.log(state.item_pop[items]), items.shape).copy()


def own_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every candidate in its row by descending score (ties: candidate order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return ranks


class SimService:
    """A RankService of in-process arms under one experiment (assignment, exploration, shadow logging)."""

    def __init__(self, arms: Sequence[SimArm], salt: str = "aa", epsilon: float = 0.0,
                 experiment_id: str | None = "sim", seed: int = 0) -> None:
        """Arms (the first live arm is production), the assignment salt and the exploration share."""
        self.live = [a for a in arms if a.mode == "live"]
        self.shadow = [a for a in arms if a.mode == "shadow"]
        if not self.live:
            raise ValueError("an experiment needs at least one live arm")
        self.salt, self.epsilon, self.experiment_id, self.seed = salt, epsilon, experiment_id, seed

    def __call__(self, requests: Requests) -> pa.Table:
        """Served rows of every arm for the requests (SERVED_SCHEMA)."""
        n_req, k = requests.item_ids.shape
        users = requests.user_id - USER_ID_BASE
        items = requests.item_ids - ITEM_ID_BASE
        arm_of = assign_arms(self.salt, [a.share for a in self.live], requests.user_id)
        arm_of = np.where(arm_of < 0, 0, arm_of)  # users beyond the shares stay on production
        rng = _rng(self.seed, ARMS_STREAM, *requests.key)
        explore = rng.random(n_req) < self.epsilon
        shuffled = own_ranks(rng.random((n_req, k)))
        parts = []
        for i, arm in enumerate(self.live):
            rows = np.flatnonzero(arm_of == i)
            if rows.size == 0:
                continue
            scores = arm.scorer(users[rows], items[rows])
            ranks = own_ranks(scores)
            pos = np.where(explore[rows, None], shuffled[rows], ranks)
            prop = self.epsilon / k + (1 - self.epsilon) * (pos == ranks)
            parts.append(self._rows(requests, rows, arm, scores, pos, prop, explore[rows]))
        for arm in self.shadow:
            rows = np.arange(n_req)
            scores = arm.scorer(users, items)
            ranks = own_ranks(scores)
            parts.append(self._rows(requests, rows, arm, scores, ranks, np.full(ranks.shape, np.nan),
                                    np.zeros(n_req, bool)))
        return pa.concat_tables(parts)

    def _rows(self, requests: Requests, rows: np.ndarray, arm: SimArm, scores: np.ndarray, pos: np.ndarray,
              prop: np.ndarray, explore: np.ndarray) -> pa.Table:
        """Served-log rows of some requests answered by one arm."""
        k = pos.shape[1]
        rep = np.repeat(rows, k)
        n = len(rep)
        return pa.table(
            {
                C.REQUEST_ID: pa.array(requests.request_id[rep], pa.string()),
                C.EVENT_TIME: _ts(requests.time_us[rep]),
                C.DOMAIN: pa.array([requests.domain] * n, pa.string()),
                C.USER_ID: pa.array(requests.user_id[rep]),
                C.ITEM_ID: pa.array(requests.item_ids[rows].ravel()),
                "position": pa.array(pos.ravel().astype(np.int32)),
                "score": pa.array(scores.ravel().astype(np.float64)),
                "model_tag": pa.array([arm.model_tag] * n, pa.string()),
                "arm": pa.array([arm.name] * n, pa.string()),
                "experiment_id": pa.array([self.experiment_id] * n, pa.string()),
                "propensity": pa.array(prop.ravel().astype(np.float64)),
                "explore": pa.array(np.repeat(explore, k)),
            },
            schema=SERVED_SCHEMA,
        )
