"""EMCDR (Man et al. 2017): MF in each domain, then an MLP mapping source user factors to target ones.

Stages (paper): 1) latent factors of each domain by MF; 2) the mapping f: U_s -> U_t fitted by MSE on
the overlapping users' factors (mapping-oriented); 3) a cold user's target factor is f(U_s[u]).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.baselines.common import BridgeConfig, TwoDomainMF


class EMCDR(TwoDomainMF):
    """Two-domain MF plus the mapping MLP (k -> hidden -> k, tanh, as in the paper's MLP variant)."""

    def __init__(self, cfg: BridgeConfig) -> None:
        """MF tables (TwoDomainMF) and the mapping."""
        super().__init__(cfg)
        k = cfg.embed_dim
        h = cfg.mapping_hidden
        self.mapping = nn.Sequential(nn.Linear(k, h), nn.Tanh(), nn.Linear(h, k))

    def bridged_user(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """f(U_s[u])."""
        return self.mapping(self.user_src(batch["user"]))


def emcdr_bridge(run):  # run: models.baselines.stages.BridgeRun
    """Stage 2: fit the mapping on the overlapping users' (source, target) factors."""
    from models.baselines.stages import fit_mapping, mapping_budget

    model = run.model
    both = torch.nonzero(model.has_target & run.has_source).squeeze(1)
    with torch.no_grad():
        src, tgt = model.user_src.weight[both].detach().clone(), model.user_tgt.weight[both].detach().clone()
    loss = fit_mapping(model.mapping, src, tgt, mapping_budget(run.tcfg))
    return model, loss


def train_emcdr(spec, train_t, val_t, out: Path, source_domain: str, overrides: dict, tcfg, meta: dict):
    """All EMCDR stages; returns the StageResult of the saved (serve-stage) model."""
    from models.baselines.stages import train_bridge

    return train_bridge(
        "emcdr", spec, train_t, val_t, out, source_domain, overrides, tcfg, meta, emcdr_bridge
    )
