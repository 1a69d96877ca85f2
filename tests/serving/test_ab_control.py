"""The main job's A/B control: the model the candidate replaced, or production when it replaced none."""

from __future__ import annotations

import pytest

from bento.rollout import KEEP, PROMOTE, RolloutDecision, ab_control

OLD, NEW = "dacdr-fashion_feed:old", "dacdr-fashion_feed:new"


def decision(action: str, production: str | None, previous: str | None) -> dict:
    """An offline decision about NEW, as rollout_task returns it."""
    return RolloutDecision("fashion_feed", action, NEW, production, previous, 0.6, 0.6, "test",
                           "2026-12-04T00:00:00+00:00").to_dict()


@pytest.mark.parametrize(
    ("action", "production", "previous", "control"),
    [
        (PROMOTE, NEW, OLD, OLD),  # promoted offline: tested online against the model it replaced
        (KEEP, OLD, OLD, OLD),  # kept out offline: tested against production
        (PROMOTE, NEW, None, None),  # the domain's first model: no model to compare with (popularity)
        (KEEP, None, None, None),  # a first model kept out: still none
    ],
)
def test_ab_control_is_the_model_the_candidate_replaced(action: str, production: str | None,
                                                        previous: str | None, control: str | None) -> None:
    """Never the candidate itself; the previous model when the candidate is production."""
    assert ab_control(decision(action, production, previous), NEW) == control
