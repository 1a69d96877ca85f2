"""CategoryTransfer: a small logistic model on the user's source category shares (the strongest simple
cross-domain estimator we know for category-driven interests).

    raw = sum_b h_u^b . W_d^b[:, c_i] + b_d[c_i] + q_i

h_u^b (C,) is the user's share of behaviour b's source events per category (from the row's sequences;
zeros when empty), c_i the target item's category, W_d^b a per-domain, per-behaviour category x category
matrix, b_d a per-domain category bias and q_i an item bias. About D*NB*C^2 + D*C + I parameters; trained
like every zoo model (models.train.fit) with early stopping on validation.
"""

from __future__ import annotations

import torch
from torch import nn

from models.baselines.common import BaselineConfig, BaselineModel, embedding
from models.layers import PackedSeq


class CategoryTransfer(BaselineModel):
    """Per-domain bilinear map from source category shares to the target item's category, plus biases."""

    def __init__(self, cfg: BaselineConfig) -> None:
        """W as a (D*C, NB*C) table (row d*C + c_i holds every W_d^b[:, c_i]), b_d and q_i; all zero."""
        super().__init__(cfg)
        c, nb = cfg.n_categories, cfg.n_behaviors
        self.transfer = nn.Embedding(cfg.n_domains * c, nb * c)
        self.category_bias = nn.Embedding(cfg.n_domains * c, 1)
        self.item_bias = embedding(cfg, cfg.n_items, 1)
        for emb in (self.transfer, self.category_bias, self.item_bias):
            nn.init.zeros_(emb.weight)

    def shares(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, NB*C): per behaviour, the share of the row's source events in each category."""
        B, NB, _ = batch["seq_item"].shape
        c = self.cfg.n_categories
        packed = PackedSeq.from_mask(batch["seq_item"] != 0)
        cat = packed.gather(batch["seq_category"]).long()  # (N,)
        h = torch.zeros(B * NB * c).index_add_(0, packed.seg * c + cat, 1.0 / packed.count)
        return h.view(B, NB * c)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        key = batch["domain"] * self.cfg.n_categories + batch["category"]  # (B,) row d*C + c_i
        raw = (self.shares(batch) * self.transfer(key)).sum(-1)
        raw = raw + self.category_bias(key).squeeze(-1) + self.item_bias(batch["item"]).squeeze(-1)
        return self.finish(raw, batch)
