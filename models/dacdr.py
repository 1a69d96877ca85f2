"""DACDR: Domain-Aware Cross-Attention for Cross-Domain Recommendation (read top to bottom).

Shapes: B batch, NB behaviour types, L max_len, k embed_dim, A attn_dim, F domain features.
Equations as implemented (and why) are in docs/model.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from models.layers import DomainAwareCrossAttention, PackedSeq, mlp, small_init, with_rating_offset
from models.prior import ClosedFormPrior
from models.spec import FeatureSpec

# module-name prefixes trained by fine-tuning (paper 3.5): e_d, target item table, W^Q/W^K/W^V (with
# their temperatures). The per-domain score parameters (M_d, the domain bias) are part of the domain's
# representation and the item bias part of the target item's, so they are trained with them.
FINETUNE_TRAINABLE: tuple[str, ...] = (
    "domain_emb.",
    "feature_embs.",
    "domain_bilinear.",
    "domain_bias.",
    "item_tgt.",
    "item_bias.",
    "attn_seq.",
    "attn_side.",
)


@dataclass
class DACDRConfig:
    """Sizes come from the FeatureSpec; the rest are hyper-parameters and ablation switches."""

    n_items: int
    n_categories: int
    n_brands: int
    n_shops: int
    n_values: int  # behaviour-value tokens (stars, rounded price) aligned with the sequences
    n_domains: int
    feature_sizes: list[int]
    n_behaviors: int
    max_len: int
    embed_dim: int = 32
    attn_dim: int = 32
    encoder_hidden: list[int] = field(default_factory=lambda: [64])
    head_hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0
    use_domain_attention: bool = True
    use_item_attention: bool = True
    attn_temperature: float = 5.0  # initial tau of the cosine attention scores (learned)
    per_domain: bool = True  # per-domain transfer score t_u^T M_d t_v and per-domain bias
    shared_transfer: bool = True  # one M_d for all behaviour types, t_u = sum_b s_b t_u,b (s_b learned)
    item_bias: bool = True  # a scalar bias per target item (its popularity), beside e_v
    # behaviour sequence elements carry their value, [item, value]: a rating history says what the user
    # thought of each item. from_spec turns it on when the spec has `rate` behaviours (docs/model.md)
    value_in_seq: bool = False
    item_ids: bool = True  # item-id embeddings in e_v and X (False: side info only; ids keep their bias)
    norm_user: bool = True  # LayerNorm on each behaviour's attention output before g and h
    sparse_embeddings: bool = True  # nn.Embedding(sparse=True) for large id tables (SparseAdam)
    sparse_min_rows: int = 4096  # tables smaller than this stay dense: a dense grad is cheaper there
    rating_offset: float = 3.0  # rating rows predict offset + head output (centre of the 1..5 scale)
    # the closed-form prior (models/prior.py): popularity's item logit (ctr), the bias model (ratings), added
    # to the output, fitted before training; the learned terms fit its residual and the head starts at zero
    prior: bool = True

    @classmethod
    def from_spec(cls, spec: FeatureSpec, overrides: dict) -> DACDRConfig:
        """Sizes from `spec`, hyper-parameters from `overrides` (config field -> value)."""
        sizes = spec.vocab_sizes()
        base = cls(
            n_items=sizes["item"], n_categories=sizes["category"], n_brands=sizes["brand"],
            n_shops=sizes["shop"], n_values=sizes["value"], n_domains=sizes["domain"],
            feature_sizes=[len(spec.feature_vocabs[f]) for f in spec.domain_features],
            n_behaviors=len(spec.behaviors), max_len=spec.max_len,
            value_in_seq="rate" in spec.behaviors,
        )
        return cls(**{**asdict(base), **overrides})

    def to_dict(self) -> dict:
        """Plain dict (weights_only-safe) for checkpoints."""
        return asdict(self)


class DACDR(nn.Module):
    """Embeddings -> two-step domain-aware cross-attention (e_seq, e_side) -> domain encoder g -> head h."""

    def __init__(self, cfg: DACDRConfig) -> None:
        """Build every table and layer from the config."""
        super().__init__()
        self.cfg = cfg
        k, a, nb = cfg.embed_dim, cfg.attn_dim, cfg.n_behaviors

        def sparse(rows: int) -> bool:
            """Sparse gradients only pay off for large tables."""
            return cfg.sparse_embeddings and rows >= cfg.sparse_min_rows

        # id tables: source-sequence items (X) and target items (e_v^t) are separate tables, as in the
        # paper's notation; fine-tuning trains only the target one. Side-info tables are shared.
        self.item_src = nn.Embedding(cfg.n_items, k, padding_idx=0, sparse=sparse(cfg.n_items))
        self.item_tgt = nn.Embedding(cfg.n_items, k, padding_idx=0, sparse=sparse(cfg.n_items))
        self.category = nn.Embedding(cfg.n_categories, k, padding_idx=0, sparse=sparse(cfg.n_categories))
        self.brand = nn.Embedding(cfg.n_brands, k, padding_idx=0, sparse=sparse(cfg.n_brands))
        self.shop = nn.Embedding(cfg.n_shops, k, padding_idx=0, sparse=sparse(cfg.n_shops))
        # the behaviour's value (a rating, a price) is side info of the sequence element, not of the item
        self.value = nn.Embedding(cfg.n_values, k, padding_idx=0)
        # e_d: the domain id and each domain feature, concatenated (small dense tables)
        self.domain_emb = nn.Embedding(cfg.n_domains, k, padding_idx=0)
        self.feature_embs = nn.ModuleList(nn.Embedding(n, k, padding_idx=0) for n in cfg.feature_sizes)
        d_dim = k * (1 + len(cfg.feature_sizes))
        v_dim = 4 * k  # e_v = [item_tgt, category, brand, shop]
        # behaviour-type embeddings added to every sequence element (multi-behaviour modelling)
        seq_dims = [k, k] if cfg.value_in_seq else [k]
        self.behavior_seq = nn.Embedding(nb, sum(seq_dims))
        self.behavior_side = nn.Embedding(nb, 4 * k)
        da, ia = cfg.use_domain_attention, cfg.use_item_attention
        tau = cfg.attn_temperature
        self.attn_seq = DomainAwareCrossAttention(seq_dims, d_dim, v_dim, a, da, ia, tau)
        self.attn_side = DomainAwareCrossAttention([k, k, k, k], d_dim, v_dim, a, da, ia, tau)
        # g: domain encoder (eq. 6); h: prediction head (eq. 7)
        self.encoder = mlp(2 * nb * a + d_dim, cfg.encoder_hidden, k, cfg.dropout)
        # the attention outputs of small embeddings are ~1e-2: without a norm the MLP biases swamp them
        self.norm_seq = nn.LayerNorm(a) if cfg.norm_user else nn.Identity()
        self.norm_side = nn.LayerNorm(a) if cfg.norm_user else nn.Identity()
        self.head = mlp(k + 2 * nb * a + v_dim + d_dim, cfg.head_hidden, 1, cfg.dropout)
        if cfg.per_domain:
            # per-domain transfer: an MLP only approximates products of the user and item vectors, and
            # each domain maps source interests onto its own items differently (docs/model.md)
            # shared_transfer: one k x k M_d per domain applied to t_u = sum_b s_b t_u,b (one interest,
            # seen through every behaviour type; s_b learned: a click says more than a browse). Else one
            # M_{d,b} per behaviour: NB times the parameters, same clicks to fit them (docs/model.md)
            n_maps = 1 if cfg.shared_transfer else nb
            self.domain_bilinear = nn.Embedding(cfg.n_domains, n_maps * k * k)
            self.domain_bias = nn.Embedding(cfg.n_domains, 1)
            if cfg.shared_transfer:
                self.behavior_weight = nn.Parameter(torch.full((nb,), 1.0 / nb))
        if cfg.item_bias:
            self.item_bias = nn.Embedding(cfg.n_items, 1, padding_idx=0, sparse=sparse(cfg.n_items))
        if cfg.prior:
            self.prior = ClosedFormPrior(cfg.n_domains, cfg.n_items, cfg.n_values)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small normal init for embeddings (N(0,1) rows would swamp the concatenations); M_d = I, biases 0"""
        small_init(self)
        with torch.no_grad():
            if self.cfg.per_domain:
                k, nb = self.cfg.embed_dim, self.cfg.n_behaviors
                n_maps = 1 if self.cfg.shared_transfer else nb
                eye = (torch.eye(k) / n_maps).reshape(1, -1).repeat(1, n_maps)  # sum of I/NB: the mean
                # with the prior, M_d = 0: the model starts exactly at the closed form and learns the transfer
                start = eye.expand_as(self.domain_bilinear.weight) * (not self.cfg.prior)
                self.domain_bilinear.weight.copy_(start)
                self.domain_bias.weight.zero_()
            if self.cfg.item_bias:
                self.item_bias.weight.zero_()
            if self.cfg.prior:  # start exactly at the prior: the learned terms fit the residual
                self.head[-1].weight.zero_()
                self.head[-1].bias.zero_()

    def _item(self, table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        """Item-id embeddings (..., k), or zeros when the config leaves item ids out."""
        if self.cfg.item_ids:
            return table(ids)
        return table.weight.new_zeros((*ids.shape, table.embedding_dim))

    def encode_user(self, batch: dict[str, torch.Tensor]) -> dict:
        """The user/domain half (U rows): e_d, the packed sequences and each attention's user side.

        Nothing here depends on the target item, so serving computes it once per (user, domain).
        """
        # e_d (U, D): domain id + domain features
        e_d = torch.cat(
            [self.domain_emb(batch["domain"])]
            + [emb(batch["domain_feats"][:, i]) for i, emb in enumerate(self.feature_embs)],
            dim=-1,
        )
        packed = PackedSeq.from_mask(batch["seq_item"] != 0)  # the N real positions of (U,NB,L)
        # sequence elements, real positions only (sparse: most of the U*NB*L slots are padding)
        seq_parts = [self._item(self.item_src, packed.gather(batch["seq_item"]))]  # [(N,k)]
        if self.cfg.value_in_seq:
            seq_parts.append(self.value(packed.gather(batch["seq_value"])))
        side_parts = [self.category(packed.gather(batch["seq_category"])),
                      self.brand(packed.gather(batch["seq_brand"])),
                      self.shop(packed.gather(batch["seq_shop"])),
                      self.value(packed.gather(batch["seq_value"]))]  # 4 x (N,k)
        return {
            "e_d": e_d, "domain": batch["domain"], "task": batch["task"], "packed": packed,
            # (U,) the prior's user term (alpha * b_u on rating rows)
            "prior_user": self.prior.user_offset(batch) if self.cfg.prior else None,
            "seq": self.attn_seq.user_side(seq_parts, self.behavior_seq.weight, packed, e_d),
            "side": self.attn_side.user_side(side_parts, self.behavior_side.weight, packed, e_d),
        }

    def encode_candidates(
        self, user: dict, items: dict[str, torch.Tensor], owner: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The candidate half: items (C,) ids scored against user row owner[c] (None: row c, C = U).

        Every intermediate of the forward pass comes back (tests and analysis read attention weights).
        """
        packed, e_d, domain = user["packed"], user["e_d"], user["domain"]
        seq, side = user["seq"], user["side"]
        src, prior_user = None, user["prior_user"]
        if owner is not None:  # C candidates of U users: candidate elements point at their user's
            packed, src = packed.expand(owner)
            e_d, domain = e_d.index_select(0, owner), domain.index_select(0, owner)
            prior_user = prior_user.index_select(0, owner) if prior_user is not None else None
        # e_v (C, 4k): target item with its side info
        e_v = torch.cat(
            [self._item(self.item_tgt, items["item"]), self.category(items["category"]),
             self.brand(items["brand"]), self.shop(items["shop"])],
            dim=-1,
        )
        # (C,NB,A), (C,NB,X), (C,NB,L), (C,NB,L)
        z_seq, _, ad_seq, ai_seq = self.attn_seq.candidate_side(
            seq, self.behavior_seq.weight, packed, e_v, src)
        z_side, pooled_side, ad_side, ai_side = self.attn_side.candidate_side(
            side, self.behavior_side.weight, packed, e_v, src)
        e_seq = self.norm_seq(z_seq).flatten(1)  # (C,NB*A): per-behaviour outputs, concatenated
        e_side = self.norm_side(z_side).flatten(1)  # (C,NB*A)
        u_hat = self.encoder(torch.cat([e_seq, e_side, e_d], dim=-1))  # (C,k) eq. 6
        out = self.head(torch.cat([u_hat, e_seq, e_side, e_v, e_d], dim=-1)).squeeze(-1)  # (C,) eq. 7
        t_u = t_v = None
        if self.cfg.per_domain:
            # transfer score in the category embedding space: t_u,b = behaviour b's attended source
            # categories, t_v = the target item's; M_{d,b} maps one onto the other per domain (I/NB at
            # init: "more of the same category" to start from). Category only: adding brand and shop
            # here cost ~0.007 validation AUC on demo (more rows to fit, same signal)
            k, nb = self.cfg.embed_dim, self.cfg.n_behaviors
            t_u = pooled_side[..., :k]  # (C,NB,k): attention-pooled E_cat of the source elements
            t_v = e_v[:, k:2 * k]  # (C,k): E_cat of the target item
            if self.cfg.shared_transfer:
                m_d = self.domain_bilinear(domain).view(-1, k, k)  # (C,k,k)
                t_sum = torch.einsum("n,bnk->bk", self.behavior_weight, t_u)  # (C,k) sum_b s_b t_u,b
                out = out + torch.einsum("bi,bij,bj->b", t_sum, m_d, t_v)
            else:
                m_d = self.domain_bilinear(domain).view(-1, nb, k, k)  # (C,NB,k,k)
                out = out + torch.einsum("bni,bnij,bj->b", t_u, m_d, t_v)  # (C,) sum_b t_u,b^T M_d,b t_v
            out = out + self.domain_bias(domain).squeeze(-1)
        if self.cfg.item_bias:
            out = out + self.item_bias(items["item"]).squeeze(-1)
        if self.cfg.prior:  # + table[d, v] + alpha * b_u: the closed form the learned terms correct
            out = out + self.prior.item_term(domain, items["item"]) + prior_user
        return {
            "e_d": e_d, "e_v": e_v, "e_seq": e_seq, "e_side": e_side, "u_hat": u_hat, "raw": out,
            "t_u": t_u, "t_v": t_v,
            "alpha_d_seq": ad_seq, "alpha_i_seq": ai_seq, "alpha_d_side": ad_side, "alpha_i_side": ai_side,
        }

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every intermediate of the forward pass: the user half, then each row's own candidate."""
        return self.encode_candidates(self.encode_user(batch), batch)

    def score(self, user: dict, items: dict[str, torch.Tensor], owner: torch.Tensor) -> torch.Tensor:
        """(C,) outputs of candidates items[c] for user rows owner[c], the user half computed once.

        Equal to forward on the rows repeated per candidate (tests/model/test_split_scoring.py).
        """
        raw = self.encode_candidates(user, items, owner)["raw"]
        return with_rating_offset(raw, user["task"].index_select(0, owner), self.cfg.rating_offset)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits for ctr rows, ratings for rating rows."""
        return with_rating_offset(self.encode(batch)["raw"], batch["task"], self.cfg.rating_offset)
