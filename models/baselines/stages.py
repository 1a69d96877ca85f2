"""Stage helpers of the multi-stage baselines: one stage through the shared trainer, freezing, the
mapping regression of EMCDR / SSCDR. Imported by the stage drivers only (models.baselines.bridges), never
by a model file: the zoo imports the model files, and this module imports models.train and the zoo."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.baselines.common import BaselineModel
from models.checkpoint import load_checkpoint, save_checkpoint
from models.run_dir import BEST
from models.spec import FeatureSpec, subset
from models.train import TrainConfig, fit, json_safe
from models.zoo import get_entry

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """A trained model with its spec and the best validation value of its last stage."""

    model: nn.Module
    spec: FeatureSpec
    val_value: float


def init_global_bias(model: nn.Module, train_t: dict[str, torch.Tensor]) -> None:
    """Start the global bias at the ctr base rate's logit (as train.init_output_bias does for DACDR), or,
    with rating rows only, at their mean minus the rating offset."""
    if not isinstance(model, BaselineModel):
        return
    ctr = train_t["task"] == 0
    with torch.no_grad():
        if ctr.any():
            rate = float(train_t["label"][ctr].mean().clamp(1e-4, 1 - 1e-4))
            model.global_bias.fill_(math.log(rate / (1 - rate)))
        elif len(ctr):
            model.global_bias.fill_(float(train_t["label"].mean()) - model.cfg.rating_offset)


def run_fit(
    model: nn.Module,
    name: str,
    spec: FeatureSpec,
    train_t: dict[str, torch.Tensor],
    val_t: dict[str, torch.Tensor],
    out: Path,
    tcfg: TrainConfig,
    meta: dict,
) -> StageResult:
    """One stage through the shared trainer (models.train.fit); returns the best checkpoint's model."""
    from models.predict import resolve_device

    torch.manual_seed(tcfg.seed)
    fit(
        model,
        name,
        spec,
        train_t,
        val_t,
        Path(out),
        tcfg,
        resolve_device(tcfg.device),
        json_safe(meta),
        False,
    )
    best, spec2, best_meta = load_checkpoint(Path(out) / BEST)
    return StageResult(best, spec2, float(best_meta.get("val_value", float("nan"))))


def save_final(result: StageResult, name: str, out: Path, meta: dict) -> Path:
    """Write the final stage's model as out/checkpoint.pt (loadable by models.checkpoint)."""
    get_entry(name)  # fail early on a name the zoo cannot rebuild
    m = {**meta, "val_value": result.val_value}
    return save_checkpoint(Path(out) / BEST, result.model, name, result.spec, json_safe(m))


def freeze_all_but(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """requires_grad only for parameters whose name starts with one of `prefixes`."""
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith(prefixes))


@dataclass
class MappingFit:
    """Budget of the EMCDR / SSCDR mapping regression (the trainer's epochs, lr and patience)."""

    epochs: int
    lr: float
    patience: int
    seed: int
    batch_size: int = 256
    val_fraction: float = 0.1


def mapping_split(n: int, cfg: MappingFit) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) positions of the n overlapping users the mapping is fitted on (seeded)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    n_val = max(1, int(n * cfg.val_fraction))
    return perm[n_val:], perm[:n_val]


def fit_mapping(
    mapping: nn.Module,
    src: torch.Tensor,
    tgt: torch.Tensor,
    cfg: MappingFit,
    unsup: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    unsup_weight: float = 0.0,
) -> float:
    """Fit mapping(src) ~ tgt by MSE (EMCDR's mapping-oriented stage); early stop on held-out pairs.

    `unsup` = (mapped-space anchors, positives, negatives) source embeddings for SSCDR's unsupervised
    triplet term: the mapping must keep a user's source items nearer to the user than random items.
    Returns the best held-out MSE; the mapping keeps its best weights.
    """
    if len(src) < 2:
        raise ValueError(f"the mapping needs >= 2 overlapping users with both embeddings, got {len(src)}")
    tr, val = mapping_split(len(src), cfg)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.Adam(mapping.parameters(), lr=cfg.lr)
    best, bad, best_state = math.inf, 0, None
    for _ in range(cfg.epochs):
        mapping.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        for lo in range(0, len(order), cfg.batch_size):
            idx = order[lo : lo + cfg.batch_size]
            loss = F.mse_loss(mapping(src[idx]), tgt[idx])
            if unsup is not None and unsup_weight > 0:
                a, p, n = unsup
                j = torch.randint(0, len(a), (len(idx),), generator=g)
                fa, fp, fn = mapping(a[j]), mapping(p[j]), mapping(n[j])
                d_pos = ((fa - fp) ** 2).sum(-1)
                d_neg = ((fa - fn) ** 2).sum(-1)
                loss = loss + unsup_weight * F.relu(1.0 + d_pos - d_neg).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        mapping.eval()
        with torch.no_grad():
            v = float(F.mse_loss(mapping(src[val]), tgt[val]))
        if v < best:
            best, bad = v, 0
            best_state = {k: x.detach().clone() for k, x in mapping.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        mapping.load_state_dict(best_state)
    return best


def domain_index(spec: FeatureSpec, domain: str) -> int:
    """The spec's index of a domain name; ValueError when the spec does not know it."""
    idx = int(spec.domains.lookup([domain])[0])
    if idx < 2:
        raise ValueError(f"domain {domain!r} is not in the feature spec's domains {spec.domains.values}")
    return idx


def users_of(t: dict[str, torch.Tensor], rows: torch.Tensor, n_users: int) -> torch.Tensor:
    """(n_users,) bool: users that have at least one of the selected rows."""
    out = torch.zeros(n_users, dtype=torch.bool)
    out[t["user"][rows]] = True
    out[:2] = False  # padding / unknown are nobody
    return out


def validation_value(
    model: nn.Module, spec: FeatureSpec, val_t: dict[str, torch.Tensor], tcfg: TrainConfig
) -> float:
    """The trainer's selection score of `model` on the validation tensors."""
    from models.predict import predict_tensors, resolve_device
    from models.train import validation_score

    pred = predict_tensors(model, val_t, tcfg.eval_batch_size, resolve_device(tcfg.device))
    return float(validation_score(spec, val_t, pred)["value"])


@dataclass
class BridgeRun:
    """What a bridge stage gets: the pre-trained model, the data and where to write."""

    model: nn.Module
    spec: FeatureSpec
    train_t: dict[str, torch.Tensor]
    val_t: dict[str, torch.Tensor]
    has_source: torch.Tensor  # (n_users,) users with source rows in train
    out: Path
    name: str
    tcfg: TrainConfig
    meta: dict


def train_bridge(
    name: str,
    spec: FeatureSpec,
    train_t: dict[str, torch.Tensor],
    val_t: dict[str, torch.Tensor],
    out: Path,
    source_domain: str,
    overrides: dict,
    tcfg: TrainConfig,
    meta: dict,
    bridge_stage,
) -> StageResult:
    """Pre-train both domains' MF (stage 1, shared trainer), run the model's bridge stage
    (`bridge_stage(BridgeRun) -> (model, val_value)`), save the model in stage `serve`."""
    entry = get_entry(name)
    src = domain_index(spec, source_domain)
    cfg = entry.make_config(spec, {**overrides, "source_domain": src, "stage": "pretrain"})
    torch.manual_seed(tcfg.seed)
    model = entry.build(cfg)
    is_src = train_t["domain"] == src
    if is_src.all():
        raise ValueError(f"{name} needs training rows of a target domain")
    with torch.no_grad():
        model.has_target.copy_(users_of(train_t, ~is_src, cfg.n_users))
    init_global_bias(model, train_t)
    fit_t, hold_t = pretrain_holdout(train_t, ~is_src, tcfg.seed)
    pre = run_fit(
        model, name, spec, fit_t, hold_t, Path(out) / "pretrain", tcfg, {**meta, "stage": "pretrain"}
    )
    has_source = users_of(train_t, is_src, cfg.n_users)
    absent = no_bridge_reason(pre.model.has_target, has_source, source_domain)
    if absent is not None:
        # nothing to map from: serve the pre-trained target MF as it is (stage pretrain: every user,
        # cold ones included, keeps their own target vector, untrained for cold users)
        note_absent(meta, name, absent + ": no bridge is fitted; every user keeps the target MF vector")
        model = pre.model
        model.cfg.stage = "pretrain"
    else:
        pre.model.cfg.stage = "bridge"
        run = BridgeRun(pre.model, spec, train_t, val_t, has_source, Path(out), name, tcfg, meta)
        model, _ = bridge_stage(run)
        model.cfg.stage = "serve"
    result = StageResult(model, spec, validation_value(model, spec, val_t, tcfg))
    save_final(result, name, out, {**meta, "stage": "serve"})
    return result


def no_bridge_reason(has_target: torch.Tensor, has_source: torch.Tensor, source_domain: str) -> str | None:
    """Why no bridge can be fitted (no source rows, fewer than 2 overlapping users), or None."""
    if not bool(has_source.any()):
        return f"no training rows of the source domain {source_domain!r}"
    n = int((has_target & has_source).sum())
    return None if n >= 2 else f"{n} users with both source and target rows (a mapping needs >= 2)"


def note_absent(meta: dict, name: str, line: str) -> None:
    """Log what a model does without a signal it uses, and record it for the experiment's report."""
    log.warning("%s: %s", name, line)
    meta.setdefault("no_signal", []).append(line)


def pretrain_holdout(
    train_t: dict[str, torch.Tensor], is_target: torch.Tensor, seed: int, fraction: float = 0.1
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(fit rows, held-out rows): a seeded share of the target training rows held out for the pre-training
    stage's early stopping. The validation users are cold, so their rows cannot judge the factorisation
    (a cold user's pre-trained target vector is untrained); held-out ratings of training users can."""
    g = torch.Generator().manual_seed(seed)
    hold = is_target & (torch.rand(len(is_target), generator=g) < fraction)
    return subset(train_t, ~hold), subset(train_t, hold)


def mapping_budget(tcfg: TrainConfig) -> MappingFit:
    """The mapping regression gets the trainer's epoch budget, learning rate and patience."""
    return MappingFit(
        epochs=max(tcfg.epochs, 1) * 5, lr=tcfg.lr, patience=max(tcfg.patience, 1) * 2, seed=tcfg.seed
    )


def train_closed_form(
    spec: FeatureSpec, train_t: dict[str, torch.Tensor], val_t: dict[str, torch.Tensor], out: Path,
    source_domain: str, overrides: dict, tcfg: TrainConfig, meta: dict,
) -> StageResult:
    """The closed-form baselines' driver: count, pick the shrinkage on validation, save the checkpoint."""
    from models.baselines.closed_form_fit import fit_closed_form

    name = meta["model_name"]
    entry = get_entry(name)
    model = entry.build(entry.make_config(spec, overrides))
    chosen = fit_closed_form(model, spec.values.ids, spec.behaviors, train_t, val_t)
    if chosen is None:
        raise ValueError(f"{name!r} is not a closed-form model")
    if chosen.get("no_signal"):
        meta.setdefault("no_signal", []).append(
            f"{name}: no source `rate` values, so no user offset (item mean only)")
    result = StageResult(model, spec, float(chosen["val_value"]))
    save_final(result, name, Path(out), {**meta, "closed_form": chosen})
    return result
