"""Training one model of an experiment with the shared budget: dispatch by name, the grid search, progress.

The test split is scored once per trained model (by the experiment that calls tune_and_train).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.experiments.config import (
    CLOSED_FORM,
    JOINT,
    JOINT_HISTORY,
    TRAIN_ROWS,
    ExperimentConfig,
    train_config,
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
