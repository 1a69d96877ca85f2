"""Building blocks of DACDR: packed sequences, segment softmax, domain-aware cross-attention, MLPs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def relu_mlp(in_dim: int, hidden: list[int], dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout blocks (no plain output layer); identity when `hidden` is empty."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = h
    return nn.Sequential(*layers)


def mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> nn.Sequential:
    """relu_mlp blocks ending in a plain Linear to `out_dim`."""
    last = hidden[-1] if hidden else in_dim
    return nn.Sequential(*relu_mlp(in_dim, hidden, dropout), nn.Linear(last, out_dim))


def with_rating_offset(raw: torch.Tensor, task: torch.Tensor, offset: float) -> torch.Tensor:
    """Logits for ctr rows (task 0) as they are; rating rows (task 1) predict offset + raw."""
    return raw + offset * (task == 1).to(raw.dtype)


def small_init(module: nn.Module, std: float = 0.05) -> None:
    """N(0, std) for every embedding of `module`, padding row zero (N(0,1) rows swamp concatenations)."""
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


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

    def expand(self, owner: torch.Tensor) -> tuple[PackedSeq, torch.Tensor]:
        """The packing of rows `owner` (C,) of this batch, one copy per candidate, and (N',) source index.

        Equal to from_mask(mask[owner]) (tested): element i of the result is element src[i] of self.
        Serving packs one user once and scores C candidates against it without re-embedding the sequence.
        """
        B, NB, L = self.shape
        per_row = torch.bincount(self.row, minlength=B)  # (B,) real elements per row
        start = torch.cumsum(per_row, 0) - per_row  # (B,) first element of each row (rows are contiguous)
        cnt = per_row.index_select(0, owner)  # (C,)
        cand = torch.repeat_interleave(torch.arange(owner.numel(), device=owner.device), cnt)  # (N',)
        first = torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)  # (N',) candidate's first slot
        slot = torch.arange(len(cand), device=cand.device) - first  # (N',) position within the row
        src = start.index_select(0, owner).repeat_interleave(cnt) + slot
        pos = cand * (NB * L) + self.pos.index_select(0, src) % (NB * L)
        seg = torch.div(pos, L, rounding_mode="floor")
        lengths = torch.bincount(seg, minlength=owner.numel() * NB).to(torch.float32)
        return PackedSeq(pos, seg, cand, lengths, lengths.index_select(0, seg), (owner.numel(), NB, L)), src

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

    Each sequence element is X_j = concat(parts)_j + beh_b: its embeddings (e.g. category, brand, shop)
    plus its behaviour-type embedding. Scores are cosine similarities times a learned temperature
    (normalised queries and keys): the paper's (qW^Q)(kW^K)^T / sqrt(A) on small embeddings gives scores
    within ~0.02 of each other, so softmax stays uniform and attention never learns to select.

    Step 1 (domain level): alpha_D = softmax_j(tau_1 cos(e_d W1Q, X_j W1K)), and the sequence is
    re-weighted, e1_j = n * alpha_D_j * X_j W1V (n = real positions: uniform attention = identity).
    Step 2 (item level): alpha_I = softmax_j(tau_2 cos(e_v W2Q, e1_j W2K)), e_z = sum_j alpha_I_j e1_j W2V.
    Cosine ignores e1_j's scale, so step 1 reaches step 2 through the values (the n * alpha_D factor).
    Without DA alpha_D is uniform; without IA alpha_I is uniform (both off = mean pooling).
    """

    def __init__(self, part_dims: list[int], d_dim: int, v_dim: int, attn_dim: int, use_da: bool,
                 use_ia: bool, temperature: float = 5.0) -> None:
        """Projections W1{Q,K,V}, W2{Q,K,V} and log-temperatures; query/key ones only when the step is on."""
        super().__init__()
        self.part_dims = list(part_dims)
        x_dim = sum(part_dims)
        self.use_da, self.use_ia = use_da, use_ia
        self.w1_v = nn.Linear(x_dim, attn_dim, bias=False)
        self.w2_v = nn.Linear(attn_dim, attn_dim, bias=False)
        if use_da:
            self.w1_q = nn.Linear(d_dim, attn_dim, bias=False)
            self.w1_k = nn.Linear(x_dim, attn_dim, bias=False)
            self.log_tau1 = nn.Parameter(torch.tensor(math.log(temperature)))
        if use_ia:
            self.w2_q = nn.Linear(v_dim, attn_dim, bias=False)
            self.w2_k = nn.Linear(attn_dim, attn_dim, bias=False)
            self.log_tau2 = nn.Parameter(torch.tensor(math.log(temperature)))

    @staticmethod
    def _cosine(q: torch.Tensor, k: torch.Tensor, packed: PackedSeq) -> torch.Tensor:
        """cos(q_row(j), k_j) for every real element: q (B,A), k (N,A) -> (N,)."""
        qn = F.normalize(q, dim=-1).index_select(0, packed.row)  # (N,A)
        return (qn * F.normalize(k, dim=-1)).sum(-1)

    def user_side(
        self, parts: list[torch.Tensor], beh: torch.Tensor, packed: PackedSeq, e_d: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """What depends on the user's sequence and the domain only, per real element (N, ...).

        x (N,X) elements without the behaviour term, alpha_d (N,) step-1 weights, c (N,) = n * alpha_d,
        k2 (N,A) normalised step-2 keys (when IA is on).
        Serving computes this once per (user, domain) and reuses it for every candidate.
        """
        NB = packed.shape[1]
        n = packed.count  # (N,) real positions of the element's sequence
        beh_seg = beh.index_select(0, packed.seg % NB)  # (N,X) behaviour term of each element
        x = torch.cat(parts, dim=-1)  # (N,X) without the behaviour term
        if self.use_da:
            k1 = self.w1_k(x + beh_seg)  # (N,A) X_j W1K
            s1 = self.log_tau1.exp() * self._cosine(self.w1_q(e_d), k1, packed)
            alpha_d = segment_softmax(s1, packed)  # (N,)
        else:
            alpha_d = 1.0 / n
        # e1_j = c_j * (X_j W1V); uniform attention -> c_j = 1
        out = {"x": x, "alpha_d": alpha_d, "c": n * alpha_d}
        if self.use_ia:
            # (X_j W1V) W2K, normalised: c_j cancels in the cosine
            out["k2"] = F.normalize(self.w2_k(self.w1_v(x + beh_seg)), dim=-1)
        return out

    def candidate_side(
        self, user: dict[str, torch.Tensor], beh: torch.Tensor, packed: PackedSeq, e_v: torch.Tensor,
        src: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 2 for each candidate: `user` from user_side, e_v (C,V) -> e_z (C,NB,A), pooled (C,NB,X),
        alpha_D (C,NB,L), alpha_I (C,NB,L) (see forward). `packed` packs the candidates' (C,NB,L)
        elements; element i is the user's element src[i] (None: the same elements, one candidate per row).

        With src the user's elements are never copied per candidate: scores gather the (N',) pairs,
        and pooling is one sparse (C*NB, N) x (N, X) product instead of a gather of (N', X) rows.
        """
        C, NB, _ = packed.shape
        n = packed.count

        def per_pair(t: torch.Tensor) -> torch.Tensor:
            return t if src is None else t.index_select(0, src)

        if self.use_ia:
            qn = F.normalize(self.w2_q(e_v), dim=-1).index_select(0, packed.row)  # (N',A)
            s2 = self.log_tau2.exp() * (qn * per_pair(user["k2"])).sum(-1)
            alpha_i = segment_softmax(s2, packed)
        else:
            alpha_i = 1.0 / n
        w = alpha_i * per_pair(user["c"])  # (N',)
        if src is None:
            pooled = packed.segment_sum(w.unsqueeze(-1) * user["x"])  # (C*NB,X) sum_j w_j X_j
        else:
            weights = torch.sparse_coo_tensor(  # indices in range by construction (expand): no check
                torch.stack([packed.seg, src]), w, (packed.n_seg, len(user["x"])), check_invariants=False
            )  # (C*NB, N): w at (candidate's segment, user element)
            pooled = torch.sparse.mm(weights, user["x"])
        pooled = pooled.view(C, NB, -1)  # (C,NB,X)
        with_beh = pooled + packed.segment_sum(w).view(C, NB, 1) * beh  # + behaviour term
        e_z = self.w2_v(self.w1_v(with_beh))  # (C,NB,A); an empty sequence gives 0
        return e_z, pooled, packed.scatter(per_pair(user["alpha_d"])), packed.scatter(alpha_i)

    def forward(
        self, parts: list[torch.Tensor], beh: torch.Tensor, packed: PackedSeq, e_d: torch.Tensor,
        e_v: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """parts (N,k_i) real elements, beh (NB,X), packed, e_d (B,D), e_v (B,V)
        -> e_z (B,NB,A), pooled (B,NB,X) = sum_j w_j concat(parts)_j (the attended elements in embedding
        space, without the behaviour term), alpha_D (B,NB,L), alpha_I (B,NB,L) (zeros at padding).

        Keys are computed per element (N,X)x(X,A); the values are re-associated: the projections are
        bias-free and linear, so sum_j w_j (X_j W1V) W2V = (sum_j w_j X_j) W1V W2V, pooled first.
        tests/model/test_attention.py checks both against the literal per-position equations.
        """
        return self.candidate_side(self.user_side(parts, beh, packed, e_d), beh, packed, e_v)


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
