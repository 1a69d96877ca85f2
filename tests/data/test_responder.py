"""The simulator as a responder: clicks on slates someone else ranked, with a position effect, seeded."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from features.simulator import ITEM_ID_BASE, USER_ID_BASE, Responder, examination, latent_state
from features.simulator.traffic import day_requests

DOMAIN = "fashion_feed"


@pytest.fixture(scope="module")
def world():
    """The tiny world."""
    return latent_state("tiny", 0)


def test_examination_curve() -> None:
    """1 / log2(1 + position): 1 at the top, 0.5 at position 3, decreasing."""
    e = examination(np.arange(1, 11))
    assert e[0] == 1.0 and e[2] == pytest.approx(0.5) and (np.diff(e) < 0).all()


def test_same_seed_same_clicks_and_position_matters(world) -> None:
    """Same (seed, key) -> same clicks; the same pairs shown lower get fewer clicks."""
    req = day_requests(world, 0, DOMAIN, date(2026, 9, 12), 11, 3000, 10)
    users = np.repeat(req.user_id, 10)
    items = req.item_ids.ravel()
    top = np.ones(len(items), np.int64)
    low = np.full(len(items), 10)
    a = Responder(world, 7).respond(DOMAIN, users, items, top, (0, 1))
    b = Responder(world, 7).respond(DOMAIN, users, items, top, (0, 1))
    c = Responder(world, 8).respond(DOMAIN, users, items, top, (0, 1))
    assert np.array_equal(a.click, b.click) and not np.array_equal(a.click, c.click)
    lower = Responder(world, 7).respond(DOMAIN, users, items, low, (0, 1))
    assert np.allclose(lower.p_shown, a.p_click * examination(low))
    # position 10 is examined with 0.29: clicks fall accordingly (binomial noise aside)
    assert lower.click.sum() < 0.45 * a.click.sum()
    assert abs(a.click.mean() - a.p_click.mean()) < 4 * np.sqrt(a.p_click.mean() / len(items))
    assert (a.value[~a.purchase] == 0).all() and (a.purchase <= a.click).all()


def test_requests_are_seeded_and_distinct(world) -> None:
    """day_requests: same seed, same traffic; every candidate set holds distinct items of the world."""
    r1 = day_requests(world, 3, DOMAIN, date(2026, 9, 12), 11, 200, 10)
    r2 = day_requests(world, 3, DOMAIN, date(2026, 9, 12), 11, 200, 10)
    assert np.array_equal(r1.item_ids, r2.item_ids) and np.array_equal(r1.user_id, r2.user_id)
    assert all(len(set(row)) == 10 for row in r1.item_ids)
    assert (r1.user_id >= USER_ID_BASE).all() and (r1.item_ids >= ITEM_ID_BASE).all()
    assert len(set(r1.request_id)) == 200


def test_unknown_ids_are_refused(world) -> None:
    """An id outside the simulated world is a clear error, not a silent wrong answer."""
    with pytest.raises(ValueError, match="not a simulated item"):
        Responder(world, 0).respond(DOMAIN, np.array([USER_ID_BASE]), np.array([7]), np.array([1]), (0,))
    with pytest.raises(ValueError, match="not simulated"):
        one = np.ones(1, np.int64)
        Responder(world, 0).respond("nowhere", one * USER_ID_BASE, one * ITEM_ID_BASE, one, (0,))
