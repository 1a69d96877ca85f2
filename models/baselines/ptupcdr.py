"""PTUPCDR (Zhu et al. 2022): a meta network gives every user a personalised bridge.

Stages (paper): 1) MF in each domain; 2) a characteristic encoder attends over the user's source items,
a meta network turns that into a k x k bridge W_u, and u_t = u_s W_u; only the encoder and meta network
are trained, task-oriented, on the overlapping users' target rows (the MF tables stay frozen).
"""

from __future__ import annotations

import torch
from torch import nn

from models.baselines.common import BridgeConfig, TwoDomainMF, source_items
from models.layers import segment_softmax

BRIDGE_PARAMS: tuple[str, ...] = ("char_", "meta_")  # what stage 2 trains


class PTUPCDR(TwoDomainMF):
    """Two-domain MF plus the characteristic encoder and the meta network."""

    def __init__(self, cfg: BridgeConfig) -> None:
        """Encoder: attention scores over source items; meta net: k -> hidden -> k*k."""
        super().__init__(cfg)
        k, h = cfg.embed_dim, cfg.mapping_hidden
        self.char_attn = nn.Sequential(nn.Linear(k, k), nn.ReLU(), nn.Linear(k, 1, bias=False))
        self.meta_net = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, k * k))

    def bridged_user(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """u_s W_u with W_u = meta(sum_j a_j v_j), a = softmax over the user's source items."""
        items, packed = source_items(self, batch)  # (N,k) over the batch's real source items
        a = segment_softmax(self.char_attn(items).squeeze(-1), packed)  # (N,) per-user softmax
        p = packed.segment_sum(a.unsqueeze(-1).to(items.dtype) * items)  # (B,k); no items -> 0
        k = self.cfg.embed_dim
        w = self.meta_net(p).view(-1, k, k)
        return torch.bmm(self.user_src(batch["user"]).unsqueeze(1), w).squeeze(1)
