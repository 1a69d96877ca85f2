"""A/B arms of one domain: the experiment config, sticky assignment, exploration (pure, no I/O).

A domain's registry JSON may hold

    "experiment": {"id": str, "salt": str, "exploration": float (epsilon, default 0),
                   "arms": [{"name": str, "model_tag": str, "share": float, "mode": "live"|"shadow"}]}

Live shares sum to 1. A user's arm is sticky: u = int(sha256(f"{salt}:{user_id}")[:16 hex], 16) /
2**64 and the arm is the first live arm whose cumulative share exceeds u, so a new salt draws a new
assignment. Shadow arms are scored and logged, never answered. With probability epsilon a request
(drawn from a hash of its request_id, so reproducible) is answered in a uniformly random order.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

PRODUCTION = "production"  # the arm of every request when the domain runs no experiment
LIVE, SHADOW = "live", "shadow"
SHARE_TOLERANCE = 1e-6


def unit_hash(text: str) -> float:
    """A uniform number in [0, 1) from the first 64 bits of sha256(text)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) / 2**64


@dataclass(frozen=True)
class Arm:
    """One arm: a model of the domain, its traffic share and whether it is answered."""

    name: str
    model_tag: str
    share: float
    mode: str = LIVE


@dataclass(frozen=True)
class Experiment:
    """A running experiment of one domain (see the module docstring)."""

    id: str
    salt: str
    arms: tuple[Arm, ...]
    exploration: float = 0.0

    @classmethod
    def parse(cls, raw: Any) -> Experiment:
        """Validate the registry's "experiment" value; ValueError naming the first problem."""
        if not isinstance(raw, dict):
            raise ValueError(f"experiment must be an object, got {type(raw).__name__}")
        for key in ("id", "salt"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ValueError(f"experiment.{key} must be a non-empty string")
        eps = raw.get("exploration", 0.0)
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0.0 <= eps <= 1.0:
            raise ValueError(f"experiment.exploration must be a number in [0, 1], got {eps!r}")
        arms_raw = raw.get("arms")
        if not isinstance(arms_raw, list) or not arms_raw:
            raise ValueError("experiment.arms must be a non-empty list")
        arms = []
        for i, a in enumerate(arms_raw):
            if not isinstance(a, dict):
                raise ValueError(f"experiment.arms[{i}] must be an object")
            name, tag, share, mode = (
                a.get("name"),
                a.get("model_tag"),
                a.get("share", 0.0),
                a.get("mode", LIVE),
            )
            if not isinstance(name, str) or not name or not isinstance(tag, str) or not tag:
                raise ValueError(f"experiment.arms[{i}] needs a name and a model_tag (strings)")
            if mode not in (LIVE, SHADOW):
                raise ValueError(f"experiment.arms[{i}].mode must be {LIVE!r} or {SHADOW!r}, got {mode!r}")
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 <= share <= 1.0:
                raise ValueError(f"experiment.arms[{i}].share must be a number in [0, 1], got {share!r}")
            arms.append(Arm(name, tag, float(share), mode))
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment arm names repeat: {names}")
        live = sum(a.share for a in arms if a.mode == LIVE)
        if not math.isclose(live, 1.0, abs_tol=SHARE_TOLERANCE):
            raise ValueError(f"experiment live arms' shares must sum to 1, got {live}")
        return cls(raw["id"], raw["salt"], tuple(arms), float(eps))

    @property
    def live(self) -> tuple[Arm, ...]:
        """The answered arms, in registry order."""
        return tuple(a for a in self.arms if a.mode == LIVE)

    @property
    def shadow(self) -> tuple[Arm, ...]:
        """The arms scored and logged but never answered."""
        return tuple(a for a in self.arms if a.mode == SHADOW)


def assign(experiment: Experiment, user_id: int) -> Arm:
    """The user's live arm: the first whose cumulative share exceeds the user's hash (sticky)."""
    u = unit_hash(f"{experiment.salt}:{int(user_id)}")
    live = experiment.live
    cumulative = 0.0
    for arm in live:
        cumulative += arm.share
        if cumulative > u:
            return arm
    return live[-1]  # u just under 1 with shares summing to 1 - rounding


def explores(request_id: str, epsilon: float) -> bool:
    """Whether this request is answered in a random order (probability epsilon, reproducible)."""
    return epsilon > 0.0 and unit_hash(f"explore:{request_id}") < epsilon


def random_order(request_id: str, n: int) -> np.ndarray:
    """A uniformly random permutation of n positions, seeded by the request id."""
    seed = int(hashlib.sha256(f"order:{request_id}".encode()).hexdigest()[:16], 16)
    return np.random.default_rng(seed).permutation(n)


def propensities(served_order: np.ndarray, score_order: np.ndarray, epsilon: float) -> np.ndarray:
    """Per served row: epsilon/n + (1 - epsilon) * [the item sits where the arm's own order puts it].

    `served_order` and `score_order` list candidate indices best first (as served / by score).
    """
    n = len(served_order)
    same = served_order == score_order
    return epsilon / n + (1.0 - epsilon) * same.astype(np.float64)
