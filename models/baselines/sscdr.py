"""SSCDR (Kang et al. 2019): metric-space embeddings, a semi-supervised mapping and multi-hop inference.

Stages (paper): 1) each domain's users and items embedded in a metric space (score = -||u - v||^2);
2) the mapping f trained on the overlapping users (supervised: f(u_s) ~ u_t) plus an unsupervised
term on all source interactions (f keeps a user's items closer to the user than random items);
3) a cold user's target vector averages f(u_s) with f of the user's source items (multi-hop inference).
"""

from __future__ import annotations

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
