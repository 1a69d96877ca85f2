"""CMF (Singh & Gordon 2008): collective matrix factorisation, one user factor shared by both domains.

Each domain keeps its own item factors and biases; source and target rows are trained together, so the
source interactions shape the user factor that scores target items (also for cold target users).
"""

from __future__ import annotations

import torch
from torch import nn

from models.baselines.common import BaselineModel, BridgeConfig, embedding, small_init


class CMF(BaselineModel):
    """raw = <P_u, Q^d_i> + b^d_i + b_d with P shared across domains."""

    def __init__(self, cfg: BridgeConfig) -> None:
        """A shared user table; per-domain-role item tables and biases."""
        super().__init__(cfg)
        self.user = embedding(cfg, cfg.n_users)
        self.item_src = embedding(cfg, cfg.n_items)
        self.item_tgt = embedding(cfg, cfg.n_items)
        self.bias_src = embedding(cfg, cfg.n_items, 1)
        self.bias_tgt = embedding(cfg, cfg.n_items, 1)
        self.domain_bias = nn.Embedding(cfg.n_domains, 1, padding_idx=0)
        small_init(self)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        i = batch["item"]
        is_src = (batch["domain"] == self.cfg.source_domain).unsqueeze(-1)
        q = torch.where(is_src, self.item_src(i), self.item_tgt(i))
        b = torch.where(is_src, self.bias_src(i), self.bias_tgt(i)).squeeze(-1)
        raw = (self.user(batch["user"]) * q).sum(-1) + b + self.domain_bias(batch["domain"]).squeeze(-1)
        return self.finish(raw, batch)
