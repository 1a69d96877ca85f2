"""The bridge baselines' training drivers (EMCDR, SSCDR, PTUPCDR): the paper's stages, one function each.

The model files hold only the nn.Modules (the zoo imports them); the drivers live here because they train
(models.baselines.stages -> models.train), so the zoo never imports the trainer: one stage imports the
one below it, never back.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.baselines.ptupcdr import BRIDGE_PARAMS
from models.baselines.sscdr import multi_hop
from models.baselines.stages import (
    fit_mapping,
    freeze_all_but,
    mapping_budget,
    mapping_split,
    note_absent,
    run_fit,
    train_bridge,
)
from models.spec import subset


def emcdr_bridge(run):  # run: models.baselines.stages.BridgeRun
    """Stage 2: fit the mapping on the overlapping users' (source, target) factors."""
    model = run.model
    both = torch.nonzero(model.has_target & run.has_source).squeeze(1)
    with torch.no_grad():
        src, tgt = model.user_src.weight[both].detach().clone(), model.user_tgt.weight[both].detach().clone()
    loss = fit_mapping(model.mapping, src, tgt, mapping_budget(run.tcfg))
    return model, loss


def train_emcdr(spec, train_t, val_t, out: Path, source_domain: str, overrides: dict, tcfg, meta: dict):
    """All EMCDR stages; returns the StageResult of the saved (serve-stage) model."""
    return train_bridge(
        "emcdr", spec, train_t, val_t, out, source_domain, overrides, tcfg, meta, emcdr_bridge
    )


def sscdr_bridge(run):  # run: models.baselines.stages.BridgeRun
    """Stage 2: supervised mapping on overlapping users + the unsupervised triplet on source interactions."""
    model = run.model
    both = torch.nonzero(model.has_target & run.has_source).squeeze(1)
    t = run.train_t
    pos = (t["domain"] == model.cfg.source_domain) & (t["label"] > 0)  # interacted source items
    g = torch.Generator().manual_seed(run.tcfg.seed)
    src_items = t["item"][t["domain"] == model.cfg.source_domain]
    with torch.no_grad():
        w_u, w_i = model.user_src.weight.detach(), model.item_src.weight.detach()
        src, tgt = w_u[both].clone(), model.user_tgt.weight[both].detach().clone()
        neg = src_items[torch.randint(0, len(src_items), (int(pos.sum()),), generator=g)]
        unsup = (w_u[t["user"][pos]].clone(), w_i[t["item"][pos]].clone(), w_i[neg].clone())
    if not bool(pos.any()):  # e.g. a ctr source with browses but no clicks: no triplet to form
        note_absent(run.meta, run.name, "no source positives (label > 0): the unsupervised term is skipped; "
                    "the mapping is fitted on the overlapping users alone")
        unsup = None
    budget = mapping_budget(run.tcfg)
    loss = fit_mapping(model.mapping, src, tgt, budget, unsup, model.cfg.unsup_weight)
    with torch.no_grad():  # the served vector's squared error on the users the mapping held out
        held = both[mapping_split(len(both), budget)[1]]
        is_src = t["domain"] == model.cfg.source_domain
        users, items = t["user"][is_src], t["item"][is_src]
        hop_sum = torch.zeros(model.cfg.n_users, model.cfg.embed_dim).index_add_(
            0, users, model.mapping(w_i[items])
        )
        n_items = torch.zeros(model.cfg.n_users).index_add_(0, users, torch.ones(len(users)))
        hop = hop_sum[held] / n_items[held].clamp(min=1).unsqueeze(-1)
        served = multi_hop(model.mapping(w_u[held]), hop, n_items[held] > 0)
        model.spread.fill_(float(((served - model.user_tgt.weight[held]) ** 2).sum(-1).mean()))
    return model, loss


def train_sscdr(spec, train_t, val_t, out: Path, source_domain: str, overrides: dict, tcfg, meta: dict):
    """All SSCDR stages; returns the StageResult of the saved (serve-stage) model."""
    return train_bridge(
        "sscdr",
        spec,
        train_t,
        val_t,
        out,
        source_domain,
        {**overrides, "metric": True},
        tcfg,
        meta,
        sscdr_bridge,
    )


def ptupcdr_bridge(run):  # run: models.baselines.stages.BridgeRun
    """Stage 2: train the encoder and meta network on target rows of users with source data."""
    model = run.model
    freeze_all_but(model, BRIDGE_PARAMS)
    t = run.train_t
    rows = (t["domain"] != model.cfg.source_domain) & run.has_source[t["user"]]
    if not rows.any():
        raise ValueError("PTUPCDR: no target training rows of users that have source data")
    res = run_fit(
        model,
        run.name,
        run.spec,
        subset(t, rows),
        run.val_t,
        run.out / "bridge",
        run.tcfg,
        {**run.meta, "stage": "bridge"},
    )
    return res.model, res.val_value


def train_ptupcdr(spec, train_t, val_t, out: Path, source_domain: str, overrides: dict, tcfg, meta: dict):
    """All PTUPCDR stages; returns the StageResult of the saved (serve-stage) model."""
    return train_bridge(
        "ptupcdr", spec, train_t, val_t, out, source_domain, overrides, tcfg, meta, ptupcdr_bridge
    )
