"""The simulator's ceilings: AUC of the true click probability (oracle) and of the unshifted interests."""

from __future__ import annotations

from pathlib import Path

from features import contract as C
from features.simulator import (
    ITEM_ID_BASE,
    P_CLICK,
    USER_ID_BASE,
    click_logit,
    latent_state,
    read_manifest,
    truth_of_test_day,
)
from models.metrics import auc, expected_auc


def oracle_auc(out: Path | str, domains: list[str] | None = None, sampled: bool = False) -> dict[str, float]:
    """AUC of the true p_click on each target domain's test-day impressions (main targets by default).

    By default the noise-free AUC (labels taken as Bernoulli(p_click), see expected_auc): the ceiling
    any model can reach on that day. `sampled=True` scores the logged labels instead (what a model's
    test AUC is compared with; noisy on small presets).
    """
    names = domains if domains is not None else read_manifest(out)["targets"]
    result = {}
    for name in names:
        tbl = truth_of_test_day(out, name)
        p = tbl.column(P_CLICK).to_numpy()
        result[name] = auc(tbl.column(C.LABEL).to_numpy(), p) if sampled else expected_auc(p)
    return result


def unshifted_auc(
    out: Path | str, domains: list[str] | None = None, sampled: bool = False
) -> dict[str, float]:
    """Like oracle_auc, scoring with the users' true interests but ignoring the target domain's shift."""
    manifest = read_manifest(out)
    state = latent_state(manifest["preset"], manifest["seed"], manifest["n_targets"])
    names = domains if domains is not None else manifest["targets"]
    result = {}
    for name in names:
        tbl = truth_of_test_day(out, name)
        u = tbl.column(C.USER_ID).to_numpy() - USER_ID_BASE
        i = tbl.column(C.ITEM_ID).to_numpy() - ITEM_ID_BASE
        score = click_logit(state, name, u, i, shifted=False)
        p = tbl.column(P_CLICK).to_numpy()
        result[name] = auc(tbl.column(C.LABEL).to_numpy(), score) if sampled else expected_auc(p, score)
    return result


