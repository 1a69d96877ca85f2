"""What both experiments share: model lists, the shared budget and grids, training one model.

Every model gets the same embedding size, optimiser budget and early-stopping rule (ExperimentConfig);
each model's few hyper-parameters are picked on validation from the grid in ExperimentConfig.grids
(first seed only; later seeds reuse the pick); the test split is scored once per trained model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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


# ---------------------------------------------------------------------------------------------
# training one model (dispatch by name: explicit tables, no registries by string lookup)
# ---------------------------------------------------------------------------------------------


# models that read the source sequences (an empty behaviour type is an empty slot for them)
SEQUENCE_READERS: frozenset[str] = frozenset(
    {"dacdr", "dacdr_no_da", "dacdr_no_ia", "dacdr_no_both", "dacdr_no_prior", "dnn_single", "dnn_multi",
     "shared_bottom", "mmoe", "ple", "star", "sscdr", "ptupcdr"}
)


def absent_signals(name: str, signals: dict) -> list[str]:
    """What model `name` does without the zone-level signals it uses (its driver adds its own lines)."""
    lines = []
    if TRAIN_ROWS.get(name) == JOINT and signals["source_rows"] == 0 and name not in custom_drivers():
        lines.append("no source example rows: trains on the target rows alone")
    if name in SEQUENCE_READERS and signals["empty_behaviors"]:
        lines.append(f"no {'/'.join(signals['empty_behaviors'])} history in the zone: those sequence "
                     "slots are empty for every row")
    return lines


@dataclass
class Tensors:
    """The tensorized splits one experiment shares across models."""

    spec: object  # models.spec.FeatureSpec
    target: dict[str, torch.Tensor]
    joint: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor]
    source_domain: str
    # target rows + source rows carrying the user's own earlier source history (JOINT_HISTORY), when built
    joint_history: dict[str, torch.Tensor] | None = None

    def rows(self, kind: str) -> dict[str, torch.Tensor]:
        """The training rows of a TRAIN_ROWS kind (TARGET, JOINT, JOINT_HISTORY)."""
        if kind == JOINT_HISTORY:
            if self.joint_history is None:
                raise ValueError("joint_history rows were not built for this experiment")
            return self.joint_history
        return self.joint if kind == JOINT else self.target


def custom_drivers() -> dict[str, Callable]:
    """Models trained by their own driver instead of one fit of a zoo model (multi-stage bridges).

    Signature: driver(spec, train_t, val_t, out, source_domain, overrides, tcfg, meta) -> result with
    .model and .val_value.
    """
    from models.baselines.bridges import train_emcdr, train_ptupcdr, train_sscdr
    from models.baselines.stages import train_closed_form

    return {"emcdr": train_emcdr, "sscdr": train_sscdr, "ptupcdr": train_ptupcdr,
            **{name: train_closed_form for name in CLOSED_FORM}}


@dataclass
class Trained:
    """One trained model: the best model, its validation value, the signals it found absent (one line
    each, from its driver) and the stages whose best validation epoch was the last allowed one."""

    model: torch.nn.Module
    val_value: float
    no_signal: list[str]
    capped: list[str]
    epochs: int  # the epoch budget of each of its fits


def fit_one(
    name: str,
    data: Tensors,
    train_t: dict[str, torch.Tensor],
    val_t: dict[str, torch.Tensor],
    overrides: dict,
    cfg: ExperimentConfig,
    seed: int,
    out: Path,
) -> Trained:
    """Train one zoo model with the shared budget (a custom driver when it has one)."""
    from models.baselines.stages import domain_index, init_global_bias, run_fit
    from models.train import init_output_bias
    from models.zoo import get_entry

    tcfg = train_config(cfg, name, seed, len(train_t["label"]))
    # drivers append one line per absent signal to meta["no_signal"] (they also log it)
    meta = {"model_name": name, "seed": seed, "overrides": overrides, "no_signal": []}
    over = {"embed_dim": cfg.embed_dim, **overrides}
    drivers = custom_drivers()
    if name in drivers:
        res = drivers[name](data.spec, train_t, val_t, out, data.source_domain, over, tcfg, meta)
    else:
        if name == "cmf":
            over["source_domain"] = domain_index(data.spec, data.source_domain)
        entry = get_entry(name)
        torch.manual_seed(seed)
        model = entry.build(entry.make_config(data.spec, over))
        init_global_bias(model, train_t)
        init_output_bias(model, train_t)
        init_rating_head(model, train_t)
        init_prior(model, data.spec, train_t, val_t)
        res = run_fit(model, name, data.spec, train_t, val_t, out, tcfg, meta)
    return Trained(res.model, res.val_value, list(meta["no_signal"]), capped_stages(out, tcfg.epochs),
                   tcfg.epochs)


def capped_stages(out: Path, epochs: int) -> list[str]:
    """The fits under `out` (one metrics.jsonl per stage) whose best validation epoch is the last
    allowed one: still improving when the budget ran out."""
    from models.train import METRICS

    capped = []
    for path in sorted(Path(out).rglob(METRICS)):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        best = [r["epoch"] for r in rows if r.get("best")]
        if best and best[-1] >= epochs - 1:
            capped.append(path.parent.relative_to(out).as_posix() if path.parent != Path(out) else "fit")
    return capped


def init_rating_head(model: torch.nn.Module, train_t: dict[str, torch.Tensor]) -> None:
    """DACDR on rating-only data: start its head bias at the mean rating (the baselines' global bias gets
    the same start), so no model spends its budget learning the scale's offset."""
    from models.dacdr import DACDR

    ratings_only = len(train_t["task"]) and bool((train_t["task"] == 1).all())
    if isinstance(model, DACDR) and not model.cfg.prior and ratings_only:
        with torch.no_grad():
            model.head[-1].bias.fill_(float(train_t["label"].mean()) - model.cfg.rating_offset)


def init_prior(model: torch.nn.Module, spec, train_t: dict[str, torch.Tensor],
               val_t: dict[str, torch.Tensor]) -> None:
    """DACDR with a prior: fit it in closed form (popularity / bias, tuned on validation) before training."""
    from models.baselines.closed_form_fit import fit_prior
    from models.dacdr import DACDR

    if isinstance(model, DACDR) and model.cfg.prior:
        fit_prior(model.prior, spec, train_t, val_t)


def _better(a: float, b: float, higher: bool) -> bool:
    """a beats b (NaN never beats)."""
    if math.isnan(a):
        return False
    return math.isnan(b) or (a > b if higher else a < b)


def tune_and_train(
    name: str,
    data: Tensors,
    train_t,
    val_t,
    cfg: ExperimentConfig,
    seed: int,
    out: Path,
    higher: bool,
    chosen: dict | None,
    log: list[dict],
):  # -> (model, overrides)
    """Train `name` at the chosen grid point, or try the grid (first seed) and keep the best on validation."""
    grid = cfg.grids.get(name, [{}]) or [{}]
    points = [chosen] if chosen is not None else (grid if cfg.tune else grid[:1])
    best_model, best_val, best_pt = None, float("nan"), points[0]
    for i, pt in enumerate(points):
        t0 = time.perf_counter()
        res = fit_one(name, data, train_t, val_t, pt, cfg, seed, out / f"grid{i}")
        log.append(
            {
                "model": name,
                "seed": seed,
                "overrides": pt,
                "val": res.val_value,
                "seconds": round(time.perf_counter() - t0, 1),
                "epochs": res.epochs,
                "capped": res.capped,
                "no_signal": res.no_signal,
            }
        )
        if best_model is None or _better(res.val_value, best_val, higher):
            best_model, best_val, best_pt = res.model, res.val_value, pt
    return best_model, best_pt


def _day_start_us(day: str) -> int:
    """Epoch microseconds of a UTC day's midnight."""
    return int(np.datetime64(day, "D").astype("datetime64[us]").astype(np.int64))


class Progress:
    """One line per finished (model, seed[, beta]) on stderr, with the elapsed time and an ETA."""

    def __init__(self, total: int) -> None:
        """`total` units of work; the clock starts now."""
        self.total, self.done_n, self.t0 = total, 0, time.perf_counter()

    def done(self, what: str, result: str) -> str:
        """Count one unit and print `[i/total] what: result (elapsed; ETA)`; returns the line."""
        import sys

        self.done_n += 1
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done_n * (self.total - self.done_n)
        line = (f"[{self.done_n}/{self.total}] {what}: {result} "
                f"({elapsed / 60:.1f} min; ETA {eta / 60:.1f} min)")
        print(line, file=sys.stderr, flush=True)
        return line
