"""benchmarks/soak_judge.py (the soak's judge): a planted stale answer, a silent cold start and a
late error are caught; answers in flight across the fault may carry either store."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_judge.py"


def load_soak():  # noqa: ANN201  # the benchmark script as a module
    """Import benchmarks/soak_judge.py (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("soak_bench", SOAK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def test_reference_matches_the_ranking_not_its_order() -> None:
    """An answer is the store's when its (item, score) pairs and cold flag are; order is free."""
    soak = load_soak()
    ref = soak.Reference([np.array([1, 2, 3])], [np.array([0.1, 0.9, 0.5])], np.array([False]))
    assert ref.matches(0, np.array([2, 3, 1]), np.array([0.9, 0.5, 0.1]), False)
    assert not ref.matches(0, np.array([2, 3, 1]), np.array([0.9, 0.5, 0.1]), True)
    assert not ref.matches(0, np.array([2, 3, 1]), np.array([0.9, 0.5, 0.1 + 1e-3]), False)


def test_judge_catches_stale_answers_silent_cold_starts_and_late_errors() -> None:
    """Window [10, 11]: one right answer on each side, one in flight with the old store (fine),
    a stale answer after the window, a cold answer before it for a warm user, an error after it."""
    soak = load_soak()
    t_send = np.array([1.0, 12.0, 10.5, 13.0, 2.0, 14.5])
    t_done = np.array([1.1, 12.1, 11.5, 13.1, 2.1, 14.9])
    ok = np.array([True, True, True, True, True, False])
    before = np.array([True, False, True, True, False, False])
    after = np.array([False, True, False, False, False, False])
    cold = np.array([False, False, False, False, True, False])
    warm = (np.ones(6, dtype=bool), np.ones(6, dtype=bool))
    v = soak.judge(t_send, t_done, ok, before, after, cold, warm, (10.0, 11.0), 0.0)
    assert (v["wrong"], v["wrong_before"], v["wrong_after"], v["stale_after"]) == (2, 1, 1, 1)
    assert (v["silent_cold_starts"], v["old_in_window"]) == (1, 1)
    assert (v["errors"], v["errors_outside_window"]) == (1, 1)
    # with a grace of 3 s after the window the stale answer at 13 s is allowed, the error is not
    v = soak.judge(t_send, t_done, ok, before, after, cold, warm, (10.0, 11.0), 3.0)
    assert (v["stale_after"], v["errors_outside_window"]) == (0, 1)
