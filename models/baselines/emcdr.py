"""EMCDR (Man et al. 2017): MF in each domain, then an MLP mapping source user factors to target ones.

Stages (paper): 1) latent factors of each domain by MF; 2) the mapping f: U_s -> U_t fitted by MSE on
the overlapping users' factors (mapping-oriented); 3) a cold user's target factor is f(U_s[u]).
"""

from __future__ import annotations

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
