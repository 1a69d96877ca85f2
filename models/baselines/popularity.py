"""Popularity baseline: a per-domain base rate plus an item bias (item popularity / mean rating).

No user information at all: the floor every personalised model must beat.
"""

from __future__ import annotations

import torch
from torch import nn

from models.baselines.common import BaselineConfig, BaselineModel, embedding


class Popularity(BaselineModel):
    """raw = b_domain + b_item: the item's click rate (ctr) or mean rating (rating), learned by training."""

    def __init__(self, cfg: BaselineConfig) -> None:
        """An item bias and a domain bias."""
        super().__init__(cfg)
        self.item_bias = embedding(cfg, cfg.n_items, 1)
        self.domain_bias = nn.Embedding(cfg.n_domains, 1, padding_idx=0)
        for emb in (self.item_bias, self.domain_bias):
            nn.init.zeros_(emb.weight)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        raw = self.item_bias(batch["item"]).squeeze(-1) + self.domain_bias(batch["domain"]).squeeze(-1)
        return self.finish(raw, batch)
