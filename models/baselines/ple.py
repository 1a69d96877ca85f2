"""PLE (Tang et al. 2020): progressive layered extraction with shared and domain-specific experts.

Each extraction level has shared experts and `n_specific_experts` experts per domain. A domain's gate
mixes its own experts with the shared ones; below the last level a shared gate builds the next level's
shared input. In multi-domain data every row belongs to one domain, so a row runs its own domain's path
only; the shared gate therefore mixes the shared experts with the row's own domain's experts (the
multi-task original mixes every task's experts, which would all see the same row).
"""

from __future__ import annotations

import torch
from torch import nn

from models.baselines.common import (
    BaselineModel,
    DomainLinear,
    DomainTower,
    ExpertBank,
    InputEmbeddings,
    MTLConfig,
    small_init,
)


class ExtractionLevel(nn.Module):
    """One CGC level: specific experts of every domain (gathered per row), shared experts, gates."""

    def __init__(self, cfg: MTLConfig, in_dim: int, last: bool) -> None:
        """Expert banks and gates of one level."""
        super().__init__()
        self.n_dom, self.n_spec = cfg.n_domains, cfg.n_specific_experts
        self.specific = ExpertBank(cfg.n_domains * cfg.n_specific_experts, in_dim, cfg.expert_dim)
        self.shared = ExpertBank(cfg.n_experts, in_dim, cfg.expert_dim)
        n_mix = cfg.n_specific_experts + cfg.n_experts
        self.gate = DomainLinear(cfg.n_domains, in_dim, n_mix)
        self.shared_gate = None if last else nn.Linear(in_dim, n_mix)

    def forward(
        self, x_dom: torch.Tensor, x_shared: torch.Tensor, dom: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(domain input, shared input) -> (domain output, next shared input or None)."""
        b = len(x_dom)
        spec = self.specific(x_dom).view(b, self.n_dom, self.n_spec, -1)[torch.arange(b), dom]  # (B,S,k)
        experts = torch.cat([spec, self.shared(x_shared)], dim=1)  # (B,S+E,k)
        out = torch.einsum("bm,bmk->bk", torch.softmax(self.gate(x_dom, dom), -1), experts)
        if self.shared_gate is None:
            return out, None
        return out, torch.einsum("bm,bmk->bk", torch.softmax(self.shared_gate(x_shared), -1), experts)


class PLE(BaselineModel):
    """Input embeddings -> n_levels extraction levels -> the row's domain tower."""

    def __init__(self, cfg: MTLConfig) -> None:
        """Levels and towers."""
        super().__init__(cfg)
        if cfg.n_levels < 1:
            raise ValueError(f"PLE needs n_levels >= 1, got {cfg.n_levels}")
        self.inputs = InputEmbeddings(cfg)
        dims = [self.inputs.out_dim] + [cfg.expert_dim] * (cfg.n_levels - 1)
        last = cfg.n_levels - 1
        self.levels = nn.ModuleList(ExtractionLevel(cfg, d, i == last) for i, d in enumerate(dims))
        self.towers = DomainTower(cfg.n_domains, cfg.expert_dim, cfg.tower_hidden, cfg.dropout)
        small_init(self)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        dom = batch["domain"]
        x_dom = x_shared = self.inputs(batch)
        for level in self.levels:
            x_dom, x_shared = level(x_dom, x_shared, dom)
        return self.finish(self.towers(x_dom, dom), batch)
