"""Building blocks of DACDR: packed sequences, segment softmax, domain-aware cross-attention, MLPs."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PackedSeq:
    """The real (non-padding) positions of a (B, NB, L) behaviour-sequence batch, flattened to N.

    Sequences are sparse (on the demo data ~8 % of the B*NB*L slots are real), so attention and pooling
    work on the N real elements only and reduce per segment (one segment = one row's behaviour type)
    with index_add; padding is never touched. Same numbers as the masked dense form.
    """

    pos: torch.Tensor  # (N,) flat index into B*NB*L
    seg: torch.Tensor  # (N,) segment id b*NB + behaviour
    row: torch.Tensor  # (N,) batch row
    lengths: torch.Tensor  # (B*NB,) float: real positions per segment
    count: torch.Tensor  # (N,) float: lengths of the element's segment
    shape: tuple[int, int, int]  # (B, NB, L)

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> PackedSeq:
        """Pack the True positions of a (B, NB, L) mask."""
        B, NB, L = mask.shape
        pos = mask.reshape(-1).nonzero().squeeze(1)  # (N,) ascending: segments are contiguous
        seg = torch.div(pos, L, rounding_mode="floor")
        lengths = torch.bincount(seg, minlength=B * NB).to(torch.float32)  # (B*NB,)
        row = torch.div(seg, NB, rounding_mode="floor")
        return cls(pos, seg, row, lengths, lengths.index_select(0, seg), (B, NB, L))

    @property
    def n_seg(self) -> int:
        """B * NB."""
        return self.shape[0] * self.shape[1]

    def gather(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, NB, L) ids -> (N,) ids of the real positions."""
        return seq.reshape(-1).index_select(0, self.pos)

    def segment_sum(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B*NB, ...): per-segment sums (an empty segment gives 0)."""
        return x.new_zeros((self.n_seg, *x.shape[1:])).index_add(0, self.seg, x)

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) -> (B, NB, L) with zeros at padding."""
        return x.new_zeros(self.shape[0] * self.shape[1] * self.shape[2]).index_put((self.pos,), x).view(
            self.shape
        )


def segment_softmax(scores: torch.Tensor, packed: PackedSeq) -> torch.Tensor:
    """Softmax of (N,) scores within each segment (each row's behaviour sequence)."""
    scores = scores.float()
    # the max is a constant shift for stability: no gradient flows through it
    top = scores.new_full((packed.n_seg,), float("-inf")).scatter_reduce(
        0, packed.seg, scores.detach(), reduce="amax"
    )
    e = torch.exp(scores - top.index_select(0, packed.seg))
    return e / packed.segment_sum(e).index_select(0, packed.seg)


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

    def _dot(self, parts: list[torch.Tensor], beh: torch.Tensor, q: torch.Tensor, packed: PackedSeq
             ) -> torch.Tensor:
        """X_j . q_row(j) for every real element: parts (N,k_i), beh (NB,X), q (B,X) -> (N,)."""
        qe = q.index_select(0, packed.row)  # (N,X)
        qs = qe.split(self.part_dims, dim=-1)
        s = sum((p * qi).sum(-1) for p, qi in zip(parts, qs, strict=True))
        beh_term = (q @ beh.T).reshape(-1)  # (B*NB,): q_b . beh for every segment
        return s + beh_term.index_select(0, packed.seg)

    def forward(
        self, parts: list[torch.Tensor], beh: torch.Tensor, packed: PackedSeq, e_d: torch.Tensor,
        e_v: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """parts (N,k_i) real elements, beh (NB,X), packed, e_d (B,D), e_v (B,V)
        -> e_z (B,NB,A), alpha_D (B,NB,L), alpha_I (B,NB,L) (zeros at padding).

        The projections are bias-free and linear, so the products are re-associated to act on the
        (B, .) query side and on the pooled sequence: (e_d W1Q)(X_j W1K)^T = X_j . (W1K^T W1Q^T e_d),
        and sum_j a_j (X_j W1V) W2V = (sum_j a_j X_j) W1V W2V. Same numbers as the per-position form,
        but no (N,X)x(X,A) matmul: cost per element is O(X), not O(X*A).
        """
        B, NB, _ = packed.shape
        n = packed.count  # (N,) real positions of the element's sequence
        if self.use_da:
            q1 = self.w1_q(e_d) @ self.w1_k.weight  # (B,X) = W1K^T (e_d W1Q)
            alpha_d = segment_softmax(self._dot(parts, beh, q1, packed) * self.scale, packed)  # (N,)
        else:
            alpha_d = 1.0 / n
        c = n * alpha_d  # (N,): e1_j = c_j * (X_j W1V); uniform attention -> c_j = 1
        if self.use_ia:
            q2 = (self.w2_q(e_v) @ self.w2_k.weight) @ self.w1_v.weight  # (B,X) = W1V^T W2K^T (e_v W2Q)
            s2 = c * self._dot(parts, beh, q2, packed) * self.scale  # (e_v W2Q)(e1_j W2K)^T / sqrt(A)
            alpha_i = segment_softmax(s2, packed)
        else:
            alpha_i = 1.0 / n
        w = alpha_i * c  # (N,)
        x = torch.cat(parts, dim=-1)  # (N,X) without the behaviour term
        pooled = packed.segment_sum(w.unsqueeze(-1) * x).view(B, NB, -1)  # (B,NB,X) = sum_j w_j X_j
        pooled = pooled + packed.segment_sum(w).view(B, NB, 1) * beh  # + behaviour term
        e_z = self.w2_v(self.w1_v(pooled))  # (B,NB,A); an empty sequence gives 0
        return e_z, packed.scatter(alpha_d), packed.scatter(alpha_i)


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
