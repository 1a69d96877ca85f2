"""The click model: the true click probability, the examination curve, and a responder for served slates.

A user clicks an item shown at 1-based position k with probability

    P(click) = examination(k) * p_click(user, item, domain),   examination(k) = 1 / log2(1 + k)

(the position-based model with DCG's discount as its examination curve: position 1 is always looked
at, position 2 with 0.63, 3 with 0.50, 10 with 0.29), so a ranker that puts the items the user
likes on top earns more clicks. `p_click` is the world's true attractiveness, sigmoid of
`click_logit` (features/simulator/world.py); the logs `simulate()` writes have no position, so they
use p_click alone. A click turns into a purchase with probability PURCHASE_RATE, at the item's
price (the GMV an A/B report sums; items without a known price pay 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.simulator.world import ITEM_ID_BASE, USER_ID_BASE, LatentState, _rng, click_logit

PURCHASE_RATE = 0.1  # P(purchase | click)
RESPONDER_STREAM = 7  # random-stream tag of the responder (the offline tables use 1..5)


def click_probability(state: LatentState, domain: str, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """True click probability of (user index, item index) pairs in a domain, position aside."""
    return 1.0 / (1.0 + np.exp(-click_logit(state, domain, users, items)))


def examination(position: np.ndarray) -> np.ndarray:
    """Probability that a user looks at 1-based `position`: 1 / log2(1 + position)."""
    pos = np.asarray(position, dtype=np.float64)
    if pos.size and pos.min() < 1:
        raise ValueError(f"positions are 1-based; got {pos.min():g}")
    return 1.0 / np.log2(1.0 + pos)


@dataclass(frozen=True)
class Responses:
    """The responder's answer, one entry per served row."""

    p_click: np.ndarray  # attractiveness (position aside)
    p_shown: np.ndarray  # p_click * examination(position): the click probability of the row
    click: np.ndarray  # bool
    purchase: np.ndarray  # bool (only clicked rows)
    value: np.ndarray  # amount paid (0 when no purchase)


class Responder:
    """The simulator's users answering slates someone else ranked (vectorised, seeded)."""

    def __init__(self, state: LatentState, seed: int) -> None:
        """A responder over a world; `seed` fixes its clicks."""
        self.state = state
        self.seed = seed

    def indices(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (user_id, item_id) -> the world's indices; ValueError on ids outside the world."""
        u = np.asarray(user_ids, dtype=np.int64) - USER_ID_BASE
        i = np.asarray(item_ids, dtype=np.int64) - ITEM_ID_BASE
        cfg = self.state.cfg
        bad_u, bad_i = (u < 0) | (u >= cfg.n_users), (i < 0) | (i >= cfg.n_items)
        if bad_u.any():
            raise ValueError(f"user_id {int(np.asarray(user_ids)[bad_u][0])} is not a simulated user")
        if bad_i.any():
            raise ValueError(f"item_id {int(np.asarray(item_ids)[bad_i][0])} is not a simulated item")
        return u, i

    def respond(
        self,
        domain: str,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        positions: np.ndarray,
        key: tuple[int, ...],
    ) -> Responses:
        """Clicks and purchases on served rows (raw ids, 1-based positions); `key` names the random stream.

        The same (seed, key) and rows give the same clicks, whichever order the caller asks in.
        """
        if domain not in self.state.bias:
            raise ValueError(f"domain {domain!r} is not simulated (known: {sorted(self.state.bias)})")
        u, i = self.indices(user_ids, item_ids)
        p = click_probability(self.state, domain, u, i)
        shown = p * examination(positions)
        rng = _rng(self.seed, RESPONDER_STREAM, *key)
        r_click, r_buy = rng.random(len(p)), rng.random(len(p))
        click = r_click < shown
        purchase = click & (r_buy < PURCHASE_RATE)
        price = np.nan_to_num(self.state.item_price[i], nan=0.0)
        return Responses(p, shown, click, purchase, np.where(purchase, price, 0.0))
