"""What both experiments share: model lists, the shared budget and grids, source rows, training one model.

Every model gets the same embedding size, optimiser budget and early-stopping rule (ExperimentConfig);
each model's few hyper-parameters are picked on validation from the grid in ExperimentConfig.grids
(first seed only; later seeds reuse the pick); the test split is scored once per trained model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from features import contract as C

CTR_MODELS: tuple[str, ...] = (
    "popularity",
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
COLDSTART_MODELS: tuple[str, ...] = ("popularity", "cmf", "sscdr", "emcdr", "ptupcdr", "dacdr")
# which rows each model trains on: target rows only, target + source rows, or one target domain at a time
TARGET, JOINT, PER_DOMAIN = "target", "joint", "per_domain"
TRAIN_ROWS: dict[str, str] = {
    "popularity": TARGET,
    "dacdr": TARGET,
    "dacdr_no_da": TARGET,
    "dacdr_no_ia": TARGET,
    "dacdr_no_both": TARGET,
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
        "popularity": [{}],
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
        "dacdr": [{"dropout": 0.0}, {"dropout": 0.2}],
        "dacdr_no_da": [{"dropout": 0.0}, {"dropout": 0.2}],
        "dacdr_no_ia": [{"dropout": 0.0}, {"dropout": 0.2}],
        "dacdr_no_both": [{"dropout": 0.0}, {"dropout": 0.2}],
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
    device: str = "cpu"
    tune: bool = True  # pick each model's grid point on validation (first seed); False = first point
    grids: dict[str, list[dict]] = field(default_factory=default_grids)
    val_fraction: float = 0.1  # cold-start: share of the remaining overlapping users held out for validation


def quick_config(device: str = "cpu") -> ExperimentConfig:
    """CI-sized budget: 3 epochs of at most 400 batches of 512 (three full passes over `tiny`), stop at
    the first epoch without validation gain, no tuning (each model's first grid point)."""
    return ExperimentConfig(
        epochs=3, batch_size=512, max_batches_per_epoch=400, patience=1, device=device, tune=False
    )


def train_config(cfg: ExperimentConfig, model: str, seed: int):  # -> models.train.TrainConfig
    """The shared optimiser budget as the trainer's config."""
    from models.train import TrainConfig

    return TrainConfig(
        model=model,
        device=cfg.device,
        seed=seed,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        patience=cfg.patience,
        max_batches_per_epoch=cfg.max_batches_per_epoch,
        progress=False,
    )


# ---------------------------------------------------------------------------------------------
# data: source-domain rows in the training-table layout
# ---------------------------------------------------------------------------------------------


def source_rows(logs: Path, like: pa.Table, before_us: int | None = None) -> pa.Table:
    """The source domain's interactions as training-table rows (schema of `like`), for the models that
    learn from source examples (CMF, EMCDR, SSCDR, PTUPCDR, DNN-multi and the multi-domain models).

    ctr source: every browse is an example, label 1 when the user clicked the same item that day (the
    simulator's browse -> click funnel). rating source: every `rate` behaviour, label = its value.
    Sequences are empty (these rows carry no history); `before_us` keeps only earlier events.
    """
    from features import io
    from models.dataset import read_domains

    domains = read_domains(logs).to_pandas()
    src = domains[domains[C.ROLE] == C.ROLE_SOURCE]
    if len(src) != 1:
        raise ValueError(f"{logs}: expected exactly one source domain, found {src[C.DOMAIN].tolist()}")
    name, task = str(src[C.DOMAIN].iloc[0]), str(src[C.TASK].iloc[0])
    beh = io.read_table(logs, C.BEHAVIORS)
    beh = beh.filter(pc.equal(beh[C.DOMAIN], name))
    if before_us is not None:
        beh = beh.filter(pc.less(pc.cast(beh[C.EVENT_TIME], pa.int64()), before_us))
    df = beh.select([C.EVENT_TIME, C.USER_ID, C.ITEM_ID, C.BEHAVIOR, C.VALUE]).to_pandas()
    if task == C.TASK_CTR:
        day = df[C.EVENT_TIME].dt.floor("D")
        clicks = df.loc[df[C.BEHAVIOR] == "click", [C.USER_ID, C.ITEM_ID]].assign(_day=day).drop_duplicates()
        rows = df.loc[df[C.BEHAVIOR] == "browse", [C.EVENT_TIME, C.USER_ID, C.ITEM_ID]].assign(_day=day)
        rows = rows.merge(clicks.assign(_clicked=1.0), on=[C.USER_ID, C.ITEM_ID, "_day"], how="left")
        rows[C.LABEL] = rows["_clicked"].fillna(0.0)
    else:
        rows = df.loc[df[C.BEHAVIOR] == "rate", [C.EVENT_TIME, C.USER_ID, C.ITEM_ID, C.VALUE]]
        if rows[C.VALUE].isna().any():
            raise ValueError(
                f"{logs}: {int(rows[C.VALUE].isna().sum())} source 'rate' behaviours have no value"
            )
        rows = rows.rename(columns={C.VALUE: C.LABEL})
    if rows.empty:
        raise ValueError(f"{logs}: no usable source-domain ({name!r}) interactions")
    rows = rows.sort_values([C.EVENT_TIME, C.USER_ID, C.ITEM_ID], kind="stable").reset_index(drop=True)
    n = len(rows)
    items = io.read_table(logs, C.ITEMS)
    pos = pc.index_in(pa.array(rows[C.ITEM_ID].to_numpy()), value_set=items[C.ITEM_ID])
    cols: dict[str, pa.Array] = {}
    for f in like.schema:
        c = f.name
        if c == C.EVENT_TIME:
            cols[c] = pa.array(rows[C.EVENT_TIME]).cast(f.type)
        elif c == C.REQUEST_ID:
            cols[c] = pc.binary_join_element_wise(f"{name}-", pa.array(np.arange(n).astype(str)), "")
        elif c == C.DOMAIN:
            cols[c] = pa.array(np.full(n, name, dtype=object), pa.string())
        elif c in (C.USER_ID, C.ITEM_ID, C.LABEL):
            cols[c] = pa.array(rows[c].to_numpy()).cast(f.type)
        elif c in C.SIDE_INFO:
            cols[c] = pc.fill_null(pc.take(items[c], pos), -1).cast(f.type)
        elif c == C.IS_COLD:
            cols[c] = pa.array(np.zeros(n, bool))
        elif c.startswith("seq_"):
            empty = pa.array(np.empty(0, np.int64), f.type.value_type)
            cols[c] = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), empty, type=f.type)
        elif c.startswith(C.DOMAIN_FEATURE_PREFIX):
            feat = c[len(C.DOMAIN_FEATURE_PREFIX) :]
            cols[c] = pa.array(np.full(n, str(src[feat].iloc[0]), dtype=object), pa.string())
        else:
            raise ValueError(f"source_rows: no rule for training-table column {c!r}")
    return pa.table(cols, schema=like.schema)


# ---------------------------------------------------------------------------------------------
# training one model (dispatch by name: explicit tables, no registries by string lookup)
# ---------------------------------------------------------------------------------------------


@dataclass
class Tensors:
    """The tensorized splits one experiment shares across models."""

    spec: object  # models.spec.FeatureSpec
    target: dict[str, torch.Tensor]
    joint: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor]
    source_domain: str


def custom_drivers() -> dict[str, Callable]:
    """Models trained by their own driver instead of one fit of a zoo model (multi-stage bridges).

    Signature: driver(spec, train_t, val_t, out, source_domain, overrides, tcfg, meta) -> result with
    .model and .val_value.
    """
    from models.baselines.emcdr import train_emcdr
    from models.baselines.ptupcdr import train_ptupcdr
    from models.baselines.sscdr import train_sscdr

    return {"emcdr": train_emcdr, "sscdr": train_sscdr, "ptupcdr": train_ptupcdr}


def train_model(
    name: str,
    data: Tensors,
    train_t: dict[str, torch.Tensor],
    val_t: dict[str, torch.Tensor],
    overrides: dict,
    cfg: ExperimentConfig,
    seed: int,
    out: Path,
):  # -> (model, val_value)
    """Train one zoo model with the shared budget; returns (best model, validation value)."""
    from models.baselines.stages import domain_index, init_global_bias, run_fit
    from models.train import init_output_bias
    from models.zoo import get_entry

    tcfg = train_config(cfg, name, seed)
    meta = {"model_name": name, "seed": seed, "overrides": overrides}
    over = {"embed_dim": cfg.embed_dim, **overrides}
    drivers = custom_drivers()
    if name in drivers:
        res = drivers[name](data.spec, train_t, val_t, out, data.source_domain, over, tcfg, meta)
        return res.model, res.val_value
    if name == "cmf":
        over["source_domain"] = domain_index(data.spec, data.source_domain)
    entry = get_entry(name)
    torch.manual_seed(seed)
    model = entry.build(entry.make_config(data.spec, over))
    init_global_bias(model, train_t)
    init_output_bias(model, train_t)
    init_rating_head(model, train_t)
    res = run_fit(model, name, data.spec, train_t, val_t, out, tcfg, meta)
    return res.model, res.val_value


def init_rating_head(model: torch.nn.Module, train_t: dict[str, torch.Tensor]) -> None:
    """DACDR on rating-only data: start its head bias at the mean rating (the baselines' global bias gets
    the same start), so no model spends its budget learning the scale's offset."""
    from models.dacdr import DACDR

    if isinstance(model, DACDR) and len(train_t["task"]) and bool((train_t["task"] == 1).all()):
        with torch.no_grad():
            model.head[-1].bias.fill_(float(train_t["label"].mean()) - model.cfg.rating_offset)


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
        model, val = train_model(name, data, train_t, val_t, pt, cfg, seed, out / f"grid{i}")
        log.append(
            {
                "model": name,
                "seed": seed,
                "overrides": pt,
                "val": val,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        if best_model is None or _better(val, best_val, higher):
            best_model, best_val, best_pt = model, val, pt
    return best_model, best_pt


def _day_start_us(day: str) -> int:
    """Epoch microseconds of a UTC day's midnight."""
    return int(np.datetime64(day, "D").astype("datetime64[us]").astype(np.int64))
