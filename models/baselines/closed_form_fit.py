"""Fitting the closed-form baselines: counts and sums per (domain, item), shrinkage picked on validation.

Vectorised torch (index_add over the training rows); nothing here loops over rows. The shrinkage grid
is fixed and small, and the point is chosen on the validation split (AUC for ctr, RMSE for ratings),
so the baselines are tuned exactly as much as the learned models are.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from models.baselines.closed_form import ItemPrior, RatingBias
from models.baselines.common import BaselineConfig
from models.layers import PackedSeq
from models.metrics import auc, rmse
from models.prior import ClosedFormPrior
from models.spec import subset

SHRINKAGE_GRID: tuple[float, ...] = (0.5, 2.0, 5.0, 20.0, 50.0, 200.0, 1000.0, 5000.0)
USER_SHRINKAGE_GRID: tuple[float, ...] = (1.0, 3.0, 10.0)
ALPHA_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def _pair_sums(t: dict[str, torch.Tensor], n_domains: int, n_items: int, value: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, sum of value) per (domain, item) as (D, I) float64 tables."""
    key = t["domain"] * n_items + t["item"]
    n = torch.zeros(n_domains * n_items, dtype=torch.float64).index_add_(0, key, torch.ones_like(value))
    s = torch.zeros(n_domains * n_items, dtype=torch.float64).index_add_(0, key, value)
    return n.view(n_domains, n_items), s.view(n_domains, n_items)


def _domain_mean(t: dict[str, torch.Tensor], n_domains: int, value: torch.Tensor) -> torch.Tensor:
    """(D,) mean of value per domain (the overall mean for domains without rows)."""
    n = torch.zeros(n_domains, dtype=torch.float64).index_add_(0, t["domain"], torch.ones_like(value))
    s = torch.zeros(n_domains, dtype=torch.float64).index_add_(0, t["domain"], value)
    overall = float(value.mean()) if len(value) else 0.0
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, overall))


def item_table(t: dict[str, torch.Tensor], n_domains: int, n_items: int, m: float, is_ctr: bool
               ) -> torch.Tensor:
    """(D, I) table: logit((c + m p_d) / (n + m)) for ctr, mu_d + sum(r - mu_d) / (n + m) for ratings."""
    y = t["label"].to(torch.float64)
    mu = _domain_mean(t, n_domains, y)  # (D,)
    n, s = _pair_sums(t, n_domains, n_items, y)
    if is_ctr:
        p = ((s + m * mu[:, None]) / (n + m)).clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p)).float()
    return (mu[:, None] + (s - n * mu[:, None]) / (n + m)).float()


def _score(pred: np.ndarray, val_t: dict[str, torch.Tensor], is_ctr: bool) -> float:
    """Validation value, higher is better (AUC, or minus RMSE)."""
    y = val_t["label"].numpy()
    return auc(y, pred) if is_ctr else -rmse(y, pred)


def _predict(model: torch.nn.Module, t: dict[str, torch.Tensor]) -> np.ndarray:
    """Scores of every row (the models are cheap: one pass)."""
    with torch.no_grad():
        return model(t).numpy()


def fit_item_prior(model: ItemPrior, train_t: dict[str, torch.Tensor], val_t: dict[str, torch.Tensor]
                   ) -> dict[str, float]:
    """Fill the item table with the best shrinkage m of SHRINKAGE_GRID on validation; returns the choice."""
    is_ctr = bool((train_t["task"] == 0).all())
    cfg = model.cfg
    offset = 0.0 if is_ctr else cfg.rating_offset  # rating rows come out as rating_offset + raw
    best = (-math.inf, SHRINKAGE_GRID[0])
    for m in SHRINKAGE_GRID:
        model.table.copy_(item_table(train_t, cfg.n_domains, cfg.n_items, m, is_ctr) - offset)
        value = _score(_predict(model, val_t), val_t, is_ctr) if len(val_t["label"]) else 0.0
        if value > best[0]:
            best = (value, m)
    model.table.copy_(item_table(train_t, cfg.n_domains, cfg.n_items, best[1], is_ctr) - offset)
    return {"shrinkage": best[1], "val_value": abs(best[0]) if not is_ctr else best[0]}


def source_rating_mean(model: RatingBias, t: dict[str, torch.Tensor]) -> float:
    """Mean raw value of every real `rate` sequence position in `t` (0 when there are none)."""
    b = int(model.rate_behavior)
    if b < 0:
        return 0.0
    packed = PackedSeq.from_mask(t["seq_item"][:, b : b + 1] != 0)
    v = model.value_of_token[packed.gather(t["seq_value"][:, b : b + 1]).long()]
    v = v[~torch.isnan(v)]
    return float(v.mean()) if len(v) else 0.0


def fit_rating_bias(model: RatingBias, train_t: dict[str, torch.Tensor], val_t: dict[str, torch.Tensor],
                    value_ids: np.ndarray, behaviors: list[str]) -> dict[str, float]:
    """Item table (shrinkage on validation), then the user shrinkage and alpha on validation."""
    tokens = torch.full((model.cfg.n_values,), float("nan"))
    tokens[2 : 2 + len(value_ids)] = torch.as_tensor(value_ids, dtype=torch.float32)
    model.value_of_token.copy_(tokens)
    model.rate_behavior.fill_(behaviors.index("rate") if "rate" in behaviors else -1)
    model.source_mean.fill_(source_rating_mean(model, train_t))
    model.alpha.fill_(0.0)
    chosen = fit_item_prior(model, train_t, val_t)  # alpha = 0: the item mean alone
    if int(model.rate_behavior) < 0 or not len(val_t["label"]):
        return {**chosen, "alpha": 0.0, "user_shrinkage": float(model.user_shrinkage), "no_signal": 1.0}
    best = (-math.inf, 0.0, USER_SHRINKAGE_GRID[0])
    for mu in USER_SHRINKAGE_GRID:
        model.user_shrinkage.fill_(mu)
        for a in ALPHA_GRID:
            model.alpha.fill_(a)
            value = _score(_predict(model, val_t), val_t, is_ctr=False)
            if value > best[0]:
                best = (value, a, mu)
    model.alpha.fill_(best[1])
    model.user_shrinkage.fill_(best[2])
    return {**chosen, "alpha": best[1], "user_shrinkage": best[2], "val_value": -best[0]}


def fit_closed_form(
    model: torch.nn.Module, value_ids: np.ndarray, behaviors: list[str], train_t: dict[str, torch.Tensor],
    val_t: dict[str, torch.Tensor],
) -> dict[str, float] | None:
    """Fit `model` in closed form when it is a closed-form baseline (returns what was chosen), else None."""
    if isinstance(model, RatingBias):
        return fit_rating_bias(model, train_t, val_t, value_ids, behaviors)
    if isinstance(model, ItemPrior):
        return fit_item_prior(model, train_t, val_t)
    return None


def fit_prior(prior: ClosedFormPrior, spec, train_t: dict[str, torch.Tensor], val_t: dict[str, torch.Tensor]
              ) -> dict[str, dict[str, float]]:
    """Fill DACDR's prior: `popularity` on the ctr domains' rows, `bias` on the rating domains' rows, each
    fitted and tuned on validation exactly as the baseline is; returns the choices per task."""
    chosen: dict[str, dict[str, float]] = {}
    for task, name in ((0, "popularity"), (1, "bias")):
        tr = train_t["task"] == task
        if not bool(tr.any()):
            continue
        cfg = BaselineConfig.from_spec(spec, {"use_sequences": False})
        base = RatingBias(cfg) if task == 1 else ItemPrior(cfg)
        sub_val = subset(val_t, val_t["task"] == task)
        chosen[name] = fit_closed_form(base, spec.values.ids, spec.behaviors, subset(train_t, tr), sub_val)
        doms = torch.unique(train_t["domain"][tr])
        with torch.no_grad():
            prior.table[doms] = base.table[doms]
            if task == 1:
                for buf in ("value_of_token", "rate_behavior", "source_mean", "user_shrinkage", "alpha"):
                    getattr(prior, buf).copy_(getattr(base, buf))
    return chosen
