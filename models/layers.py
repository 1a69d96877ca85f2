"""Building blocks of DACDR: masked softmax, the two-step domain-aware cross-attention, MLPs."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout blocks ending in a plain Linear to `out_dim`."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to `mask`; an all-masked row gives all zeros (never NaN)."""
    # a finite fill instead of -inf: an all-masked row becomes uniform, then the mask zeroes it
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * mask.to(scores.dtype)


class DomainAwareCrossAttention(nn.Module):
    """Two-step cross-attention over behaviour sequences (paper eq. 3-4, read as attention over X).

    Step 1 (domain level): alpha_D = softmax_j((e_d W1Q)(X_j W1K)^T / sqrt(A)), and the sequence is
    re-weighted, e1_j = n * alpha_D_j * X_j W1V (n = real positions: uniform attention = identity).
    Step 2 (item level): alpha_I = softmax_j((e_v W2Q)(e1_j W2K)^T / sqrt(A)), e_z = sum_j alpha_I_j e1_j W2V.
    Without DA alpha_D is uniform; without IA alpha_I is uniform (both off = mean pooling).
    Each sequence element is X_j = concat(parts)_j + beh_b: the element's embeddings (e.g. category,
    brand, shop) plus its behaviour-type embedding; X is never materialised (see forward).
    """

    def __init__(self, part_dims: list[int], d_dim: int, v_dim: int, attn_dim: int, use_da: bool,
                 use_ia: bool) -> None:
        """Projections W1{Q,K,V} and W2{Q,K,V}; the query/key ones exist only when their step is on."""
        super().__init__()
        self.part_dims = list(part_dims)
        x_dim = sum(part_dims)
        self.use_da, self.use_ia, self.scale = use_da, use_ia, 1.0 / math.sqrt(attn_dim)
        self.w1_v = nn.Linear(x_dim, attn_dim, bias=False)
        self.w2_v = nn.Linear(attn_dim, attn_dim, bias=False)
        if use_da:
            self.w1_q = nn.Linear(d_dim, attn_dim, bias=False)
            self.w1_k = nn.Linear(x_dim, attn_dim, bias=False)
        if use_ia:
            self.w2_q = nn.Linear(v_dim, attn_dim, bias=False)
            self.w2_k = nn.Linear(attn_dim, attn_dim, bias=False)

    def _dot(self, parts: list[torch.Tensor], beh: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """X_j . q for every element: parts (B,NB,L,k_i), beh (NB,X), q (B,X) -> (B,NB,L)."""
        qs = q.split(self.part_dims, dim=-1)
        # broadcast-multiply + sum rather than einsum: einsum lowers to batched GEMMs with a
        # 1-wide dimension whose backward is an order of magnitude slower on CPU
        s = sum((p * qi[:, None, None, :]).sum(-1) for p, qi in zip(parts, qs, strict=True))
        return s + (q @ beh.T).unsqueeze(-1)  # behaviour term (B,NB,1), broadcast over L

    def forward(
        self, parts: list[torch.Tensor], beh: torch.Tensor, mask: torch.Tensor, e_d: torch.Tensor,
        e_v: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """parts (B,NB,L,k_i) with zero rows at padding, beh (NB,X), mask (B,NB,L), e_d (B,D), e_v (B,V)
        -> e_z (B,NB,A), alpha_D (B,NB,L), alpha_I (B,NB,L).

        The projections are bias-free and linear, so the products are re-associated to act on the
        (B, .) query side and on the pooled sequence: (e_d W1Q)(X_j W1K)^T = X_j . (W1K^T W1Q^T e_d),
        and sum_j a_j (X_j W1V) W2V = (sum_j a_j X_j) W1V W2V. Same numbers as the per-position form,
        but no (B,NB,L,X)x(X,A) matmul: cost per element is O(X), not O(X*A).
        """
        maskf = mask.to(parts[0].dtype)
        n = maskf.sum(-1, keepdim=True)  # (B,NB,1) real positions per behaviour
        if self.use_da:
            q1 = self.w1_q(e_d) @ self.w1_k.weight  # (B,X) = W1K^T (e_d W1Q)
            alpha_d = masked_softmax(self._dot(parts, beh, q1) * self.scale, mask)  # (B,NB,L)
        else:
            alpha_d = maskf / n.clamp(min=1.0)
        c = n * alpha_d  # (B,NB,L): e1_j = c_j * (X_j W1V); uniform attention -> c_j = 1
        if self.use_ia:
            q2 = (self.w2_q(e_v) @ self.w2_k.weight) @ self.w1_v.weight  # (B,X) = W1V^T W2K^T (e_v W2Q)
            s2 = c * self._dot(parts, beh, q2) * self.scale  # (e_v W2Q)(e1_j W2K)^T / sqrt(A)
            alpha_i = masked_softmax(s2, mask)
        else:
            alpha_i = maskf / n.clamp(min=1.0)
        w = alpha_i * c  # (B,NB,L), zero at padding
        wu = w.unsqueeze(-1)
        pooled = torch.cat([(wu * p).sum(-2) for p in parts], dim=-1)  # (B,NB,X) = sum_j w_j X_j
        pooled = pooled + w.sum(-1, keepdim=True) * beh  # + behaviour term
        e_z = self.w2_v(self.w1_v(pooled))  # (B,NB,A); an empty sequence gives 0
        return e_z, alpha_d, alpha_i


def grow_embedding(emb: nn.Embedding, num: int, init_row: int) -> nn.Embedding:
    """A copy of `emb` with `num` rows: old rows kept bit-identical, new rows copied from `init_row`."""
    if num < emb.num_embeddings:
        raise ValueError(f"cannot shrink an embedding from {emb.num_embeddings} to {num} rows")
    new = nn.Embedding(num, emb.embedding_dim, padding_idx=emb.padding_idx, sparse=emb.sparse)
    with torch.no_grad():
        new.weight[: emb.num_embeddings] = emb.weight
        new.weight[emb.num_embeddings:] = emb.weight[init_row]
    new.weight.requires_grad_(emb.weight.requires_grad)
    return new
