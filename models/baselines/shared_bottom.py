"""Shared-Bottom (Caruana 1997): one bottom network shared by all domains, one tower per domain."""

from __future__ import annotations

import torch

from models.baselines.common import (
    BaselineModel,
    DomainTower,
    InputEmbeddings,
    MTLConfig,
    relu_mlp,
    small_init,
)


class SharedBottom(BaselineModel):
    """Input embeddings -> shared ReLU bottom (hidden) -> the row's domain tower."""

    def __init__(self, cfg: MTLConfig) -> None:
        """Bottom MLP and per-domain towers."""
        super().__init__(cfg)
        self.inputs = InputEmbeddings(cfg)
        self.bottom = relu_mlp(self.inputs.out_dim, cfg.hidden, cfg.dropout)
        bottom_dim = cfg.hidden[-1] if cfg.hidden else self.inputs.out_dim
        self.towers = DomainTower(cfg.n_domains, bottom_dim, cfg.tower_hidden, cfg.dropout)
        small_init(self)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        return self.finish(self.towers(self.bottom(self.inputs(batch)), batch["domain"]), batch)
