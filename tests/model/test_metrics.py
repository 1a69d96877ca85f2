"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import auc, gauc, logloss, mae, rmse


def test_auc_hand_computed_with_ties() -> None:
    """Pairs (pos, neg): 0.8>0.3, 0.8>0.5, 0.5=0.5 (half), 0.2<0.3, 0.2<0.5 -> 2.5 / 4... counted by hand."""
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.8, 0.3, 0.5, 0.5, 0.2])
    # positives 0.8, 0.5, 0.2 vs negatives 0.3, 0.5: (1 + 1) + (1 + 0.5) + (0 + 0) = 3.5 of 6 pairs
    assert auc(y, s) == pytest.approx(3.5 / 6)
    assert auc(y, -s) == pytest.approx(1 - 3.5 / 6)
    assert auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    assert auc(np.array([1, 1, 0, 0]), np.zeros(4)) == 0.5  # all tied
    assert math.isnan(auc(np.ones(3), np.arange(3.0)))


def test_auc_matches_pairwise_definition() -> None:
    """Random data with many ties: rank formula == brute-force pair counting."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300).astype(float)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg))
    assert auc(y, s) == pytest.approx(brute)


def test_gauc_impression_weighted_and_skips_one_class_users() -> None:
    """User a (3 imps) AUC 1.0, user b (2 imps) AUC 0.0, user c only negatives (skipped)."""
    users = np.array(["a", "a", "a", "b", "b", "c", "c"])
    y = np.array([1, 0, 0, 1, 0, 0, 0])
    s = np.array([0.9, 0.1, 0.2, 0.1, 0.9, 0.5, 0.6])
    assert gauc(users, y, s) == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    # ties inside a user count half
    assert gauc(np.array([1, 1]), np.array([1, 0]), np.array([0.3, 0.3])) == pytest.approx(0.5)
    assert math.isnan(gauc(np.array([1, 2]), np.array([1, 0]), np.array([0.3, 0.4])))


def test_logloss_mae_rmse() -> None:
    """Hand-computed values."""
    want = -(math.log(0.8) + math.log(0.6)) / 2
    assert logloss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(want)
    assert mae(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])) == pytest.approx(4 / 3)
    assert rmse(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])) == pytest.approx(math.sqrt(10 / 3))
