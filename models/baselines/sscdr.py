"""SSCDR (Kang et al. 2019): metric-space embeddings, a semi-supervised mapping and multi-hop inference.

Stages (paper): 1) each domain's users and items embedded in a metric space (score = -||u - v||^2);
2) the mapping f trained on the overlapping users (supervised: f(u_s) ~ u_t) plus an unsupervised
term on all source interactions (f keeps a user's items closer to the user than random items);
3) a cold user's target vector averages f(u_s) with f of the user's source items (multi-hop inference).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.baselines.common import BridgeConfig, TwoDomainMF, source_items


class SSCDR(TwoDomainMF):
    """Metric two-domain factorisation plus the mapping MLP."""

    def __init__(self, cfg: BridgeConfig) -> None:
        """Metric scoring is forced on; the mapping is k -> hidden -> k."""
        if not cfg.metric:
            raise ValueError("SSCDR scores in a metric space: its config must have metric=True")
        super().__init__(cfg)
        k = cfg.embed_dim
        h = cfg.mapping_hidden
        self.mapping = nn.Sequential(nn.Linear(k, h), nn.Tanh(), nn.Linear(h, k))
        # E||bridged - u_t||^2 on held-out overlapping users (set by the bridge stage), see forward
        self.register_buffer("spread", torch.zeros(()))

    def bridged_user(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Multi-hop inference over the user's source items in the batch's sequences."""
        own = self.mapping(self.user_src(batch["user"]))
        items, packed = source_items(self, batch)  # (N,k)
        hop = packed.segment_sum(self.mapping(items) / packed.count.unsqueeze(-1))  # (B,k) mean of f(v_i)
        return multi_hop(own, hop, packed.lengths > 0)  # one segment per row

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Metric scores; a bridged row subtracts the mapping's expected squared error: the mapping predicts
        E[u_t | u_s], and E||u_t - q||^2 = ||E[u_t | u_s] - q||^2 + E||u_t - E[u_t | u_s]||^2, so the distance
        to the mapped vector alone is too short and would bias every cold user's ratings up."""
        out = super().forward(batch)
        bridged = (batch["domain"] != self.cfg.source_domain) & self.bridged_rows(batch)
        return out - self.spread * bridged.to(out.dtype)


def multi_hop(own: torch.Tensor, hop: torch.Tensor, has_items: torch.Tensor) -> torch.Tensor:
    """The served cold-user vector: (f(u_s) + mean_i f(v_i^s)) / 2, or f(u_s) alone without source items.
    own, hop (B,k); has_items (B,) bool."""
    return torch.where(has_items.unsqueeze(-1), 0.5 * (own + hop), own)


def sscdr_bridge(run):  # run: models.baselines.stages.BridgeRun
    """Stage 2: supervised mapping on overlapping users + the unsupervised triplet on source interactions."""
    from models.baselines.stages import fit_mapping, mapping_budget, mapping_split, note_absent

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
    from models.baselines.stages import train_bridge

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
