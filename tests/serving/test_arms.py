"""bento.arms: sticky assignment, shares over 100k users, salts, exploration and propensities."""

from __future__ import annotations

import numpy as np
import pytest

from bento.arms import Experiment, assign, explores, propensities, random_order, unit_hash


def experiment(salt: str = "s1", shares: tuple[float, ...] = (0.7, 0.2, 0.1), eps: float = 0.0) -> Experiment:
    """A three-arm experiment plus one shadow arm."""
    arms = [{"name": f"a{i}", "model_tag": f"dacdr-d:v{i}", "share": s} for i, s in enumerate(shares)]
    arms.append({"name": "shadow", "model_tag": "dacdr-d:vs", "share": 0.0, "mode": "shadow"})
    return Experiment.parse({"id": "exp1", "salt": salt, "arms": arms, "exploration": eps})


def test_hash_is_the_contract() -> None:
    """u = int(sha256(f'{salt}:{user_id}')[:16 hex], 16) / 2**64."""
    import hashlib

    want = int(hashlib.sha256(b"s1:42").hexdigest()[:16], 16) / 2**64
    assert unit_hash("s1:42") == want


def test_assignment_is_sticky_and_never_shadow() -> None:
    """The same user gets the same live arm every time."""
    exp = experiment()
    for user in range(500):
        first = assign(exp, user)
        assert first.mode == "live"
        assert all(assign(exp, user) == first for _ in range(3))


def test_shares_hold_over_100k_users() -> None:
    """Each arm's fraction of 100k users is within 4 standard errors of its share."""
    exp = experiment()
    n = 100_000
    counts: dict[str, int] = {}
    for user in range(n):
        name = assign(exp, user).name
        counts[name] = counts.get(name, 0) + 1
    for arm in exp.live:
        se = (arm.share * (1 - arm.share) / n) ** 0.5
        assert abs(counts[arm.name] / n - arm.share) < 4 * se, (arm.name, counts)


def test_a_new_salt_reassigns() -> None:
    """About half the users of a 50/50 split change arm under another salt."""
    a, b = experiment("s1", (0.5, 0.5)), experiment("s2", (0.5, 0.5))
    moved = sum(assign(a, u).name != assign(b, u).name for u in range(10_000))
    assert 4_500 < moved < 5_500


@pytest.mark.parametrize(
    "raw, problem",
    [
        ({"id": "e", "salt": "s", "arms": [{"name": "a", "model_tag": "t", "share": 0.5}]}, "sum to 1"),
        ({"id": "", "salt": "s", "arms": []}, "experiment.id"),
        ({"id": "e", "salt": "s", "exploration": 2, "arms": []}, "exploration"),
        (
            {"id": "e", "salt": "s", "arms": [{"name": "a", "model_tag": "t", "share": 1, "mode": "x"}]},
            "mode",
        ),
    ],
)
def test_bad_experiments_are_named(raw: dict, problem: str) -> None:
    """A bad registry entry is a ValueError naming the field."""
    with pytest.raises(ValueError, match=problem):
        Experiment.parse(raw)


def test_exploration_rate_and_reproducibility() -> None:
    """About epsilon of requests explore; the same request id always draws the same order."""
    share = np.mean([explores(f"r{i}", 0.1) for i in range(20_000)])
    assert 0.09 < share < 0.11
    assert not any(explores(f"r{i}", 0.0) for i in range(1000))
    assert (random_order("abc", 7) == random_order("abc", 7)).all()
    assert sorted(random_order("abc", 7)) == list(range(7))


def test_propensities() -> None:
    """epsilon/n + (1 - epsilon) where the served item is where the score order puts it."""
    score = np.array([2, 0, 1])
    assert np.allclose(propensities(score, score, 0.0), 1.0)
    got = propensities(np.array([2, 1, 0]), score, 0.3)
    assert np.allclose(got, [0.1 + 0.7, 0.1, 0.1])
