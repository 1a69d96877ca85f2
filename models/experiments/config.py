"""The experiments' shared setup: model lists, which rows each trains on, the budget and the grids.

Every model gets the same embedding size, optimiser budget and early-stopping rule (ExperimentConfig);
each model's few hyper-parameters are picked on validation from the grid in ExperimentConfig.grids
(first seed only; later seeds reuse the pick). Training one model: models.experiments.common.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CTR_MODELS: tuple[str, ...] = (
    "popularity",
    "category_transfer",
    "dnn_single",
    "cmf",
    "sscdr",
    "emcdr",
    "ptupcdr",
    "dnn_multi",
    "shared_bottom",
    "mmoe",
    "ple",
    "star",
    "dacdr",
    "dacdr_no_da",
    "dacdr_no_ia",
    "dacdr_no_both",
)
COLDSTART_MODELS: tuple[str, ...] = ("item_mean", "bias", "cmf", "sscdr", "emcdr", "ptupcdr", "dacdr")
DACDR_MODELS: frozenset[str] = frozenset({"dacdr", "dacdr_no_da", "dacdr_no_ia", "dacdr_no_both",
                                          "dacdr_no_prior"})
# run only when named with --model: the prior ablation (DACDR without its closed-form offset)
OPT_IN_MODELS: tuple[str, ...] = ("dacdr_no_prior",)
# fitted in closed form (counts + a shrinkage picked on validation), no optimiser budget
CLOSED_FORM: tuple[str, ...] = ("popularity", "item_mean", "bias")
# which rows each model trains on: target rows only, target + source rows, or one target domain at a time
TARGET, JOINT, PER_DOMAIN = "target", "joint", "per_domain"
TRAIN_ROWS: dict[str, str] = {
    "popularity": TARGET,
    "item_mean": TARGET,
    "bias": TARGET,
    "category_transfer": TARGET,
    "dacdr": TARGET,
    "dacdr_no_da": TARGET,
    "dacdr_no_ia": TARGET,
    "dacdr_no_both": TARGET,
    "dacdr_no_prior": TARGET,
    "dnn_single": PER_DOMAIN,
    "dnn_multi": JOINT,
    "cmf": JOINT,
    "emcdr": JOINT,
    "sscdr": JOINT,
    "ptupcdr": JOINT,
    "shared_bottom": JOINT,
    "mmoe": JOINT,
    "ple": JOINT,
    "star": JOINT,
}
# cold-start ratings: DACDR also learns from source rows that carry the user's own earlier source history
# (JOINT_HISTORY), the source-domain training signal its sequence tables otherwise lack: the overlapping
# training users alone are too few to learn a source-rating -> target-rating map (docs/model.md). The
# other models keep the empty-history source rows they were measured with. CTR keeps target rows for
# DACDR: there source rows with histories did not help at the shared budget (docs/results.md)
JOINT_HISTORY = "joint_history"
COLDSTART_TRAIN_ROWS: dict[str, str] = {**TRAIN_ROWS, "dacdr": JOINT_HISTORY, "dacdr_no_prior": JOINT_HISTORY}
# leave-last-out ranking on real implicit data: DACDR and its ablations learn from source examples too (with
# their own earlier source history), as the multi-domain towers that lead there do (docs/results.md)
RANKING_TRAIN_ROWS: dict[str, str] = {**TRAIN_ROWS, **{m: JOINT_HISTORY for m in (
    "dacdr", "dacdr_no_da", "dacdr_no_ia", "dacdr_no_both", "dacdr_no_prior")}}
RESULT_COLUMNS_CTR: tuple[str, ...] = (
    "model",
    "domain",
    "seed",
    "auc",
    "logloss",
    "gauc",
    "auc_cold",
    "auc_warm",
)
RESULT_COLUMNS_RATING: tuple[str, ...] = ("model", "beta", "seed", "mae", "rmse")


def default_grids() -> dict[str, list[dict]]:
    """Each model's small hyper-parameter grid (first point = the default; --quick uses only it)."""
    return {
        "popularity": [{}],  # closed form: its shrinkage grid lives in closed_form_fit
        "item_mean": [{}],
        "bias": [{}],
        "category_transfer": [{}],  # untuned, as the measurement was
        "dnn_single": [{"dropout": 0.0}, {"dropout": 0.2}],
        "dnn_multi": [{"dropout": 0.0}, {"dropout": 0.2}],
        "cmf": [{}],  # plain MF: nothing to tune beyond the shared budget
        "emcdr": [{"mapping_hidden": 64}, {"mapping_hidden": 128}],
        "sscdr": [{"unsup_weight": 0.5}, {"unsup_weight": 0.1}],
        "ptupcdr": [{"mapping_hidden": 64}, {"mapping_hidden": 128}],
        "shared_bottom": [{"dropout": 0.0}, {"dropout": 0.2}],
        "mmoe": [{"n_experts": 4}, {"n_experts": 8}],
        "ple": [{"n_levels": 2}, {"n_levels": 1}],
        "star": [{"dropout": 0.0}, {"dropout": 0.2}],
        # item-id embeddings or side info only: ids memorise where the signal lives in categories
        # (the simulator), and carry collaborative signal where it lives in items (docs/model.md)
        # the closed-form prior on or off (models/prior.py): on ratings it is what keeps DACDR at or below
        # `bias`; on sparse implicit data a fixed popularity offset held DACDR back (docs/results.md)
        "dacdr": [{}, {"item_ids": False}, {"prior": False}],
        "dacdr_no_da": [{}, {"item_ids": False}],
        "dacdr_no_ia": [{}, {"item_ids": False}],
        "dacdr_no_both": [{}, {"item_ids": False}],
        "dacdr_no_prior": [{}, {"item_ids": False}],
    }


@dataclass
class ExperimentConfig:
    """The budget every model shares, and the hyper-parameter grids."""

    embed_dim: int = 32
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 2e-3
    patience: int = 2
    max_batches_per_epoch: int | None = None
    # total optimiser steps per fit; None = `epochs` passes. Set, each fit gets ceil(max_steps / batches
    # per epoch) epochs, so a small training set (cold-start at beta 0.8) gets as many steps as a large one
    max_steps: int | None = None
    device: str = "cpu"
    tune: bool = True  # pick each model's grid point on validation (first seed); False = first point
    grids: dict[str, list[dict]] = field(default_factory=default_grids)
    val_fraction: float = 0.1  # cold-start: share of the remaining overlapping users held out for validation
    # multi-domain: first impression days kept out of training (they only let histories grow)
    burn_in_days: int = 0
    sequence_resolution: str = "day"  # features.dataset.RESOLUTIONS: histories as of the day or the event


def quick_config(device: str = "cpu") -> ExperimentConfig:
    """CI-sized budget: 3 epochs of at most 400 batches of 512 (three full passes over `tiny`), stop at
    the first epoch without validation gain, no tuning (each model's first grid point)."""
    return ExperimentConfig(
        epochs=3, batch_size=512, max_batches_per_epoch=400, patience=1, device=device, tune=False
    )


def budget_epochs(cfg: ExperimentConfig, n_rows: int | None) -> int:
    """Epochs of one fit: cfg.epochs, or enough epochs over `n_rows` rows for cfg.max_steps steps."""
    if cfg.max_steps is None or n_rows is None:
        return cfg.epochs
    per_epoch = max(1, math.ceil(n_rows / cfg.batch_size))
    if cfg.max_batches_per_epoch is not None:
        per_epoch = min(per_epoch, cfg.max_batches_per_epoch)
    return max(1, math.ceil(cfg.max_steps / per_epoch))


def check_config(cfg: ExperimentConfig) -> None:
    """Fail before any training on a budget no fit can run with (ValueError naming the field)."""
    for name in ("epochs", "batch_size", "patience", "embed_dim"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("max_steps", "max_batches_per_epoch"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")


def check_run(names: list[str], allowed: tuple[str, ...], seeds: int) -> None:
    """Fail before any training on unknown model names or a seed count below 1."""
    unknown = sorted(set(names) - set(allowed) - set(OPT_IN_MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(allowed)}")
    if not names:
        raise ValueError("no model to run")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")


def train_config(
    cfg: ExperimentConfig, model: str, seed: int, n_rows: int | None = None
):  # -> models.train.TrainConfig
    """The shared optimiser budget as the trainer's config (`n_rows`: the fit's training rows)."""
    from models.train import TrainConfig

    return TrainConfig(
        model=model,
        device=cfg.device,
        seed=seed,
        epochs=budget_epochs(cfg, n_rows),
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        patience=cfg.patience,
        max_batches_per_epoch=cfg.max_batches_per_epoch,
        progress=False,
        validate_start=model in DACDR_MODELS,  # they start at the closed-form prior
    )
