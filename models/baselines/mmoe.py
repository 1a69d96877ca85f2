"""MMoE (Ma et al. 2018): experts shared by all domains, a softmax gate and a tower per domain."""

from __future__ import annotations

import torch

from models.baselines.common import (
    BaselineModel,
    DomainLinear,
    DomainTower,
    ExpertBank,
    InputEmbeddings,
    MTLConfig,
    small_init,
)


class MMoE(BaselineModel):
    """y_d = tower_d( sum_e softmax(W_d x)_e * expert_e(x) ) for the row's domain d."""

    def __init__(self, cfg: MTLConfig) -> None:
        """Experts, per-domain gates and towers."""
        super().__init__(cfg)
        self.inputs = InputEmbeddings(cfg)
        d = self.inputs.out_dim
        self.experts = ExpertBank(cfg.n_experts, d, cfg.expert_dim)
        self.gates = DomainLinear(cfg.n_domains, d, cfg.n_experts)
        self.towers = DomainTower(cfg.n_domains, cfg.expert_dim, cfg.tower_hidden, cfg.dropout)
        small_init(self)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        x, dom = self.inputs(batch), batch["domain"]
        gate = torch.softmax(self.gates(x, dom), dim=-1)  # (B,E)
        mixed = torch.einsum("be,bek->bk", gate, self.experts(x))
        return self.finish(self.towers(mixed, dom), batch)
