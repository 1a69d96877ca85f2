"""Shared pieces of the baseline zoo: configs, input embeddings, per-domain layers and the stage helpers.

Every baseline reads the FeatureSpec batch dict (models/spec.py), returns (B,) logits for ctr rows and
ratings for rating rows (rating_offset + raw, like DACDR), and is trained by models.train.fit. Training
logic (stages, freezing, the EMCDR/SSCDR mapping regression) lives in models/baselines/stages.py and in
the baselines' stage drivers, never inside an nn.Module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import (  # noqa: F401  (the baselines import these here)
    PackedSeq,
    relu_mlp,
    small_init,
    with_rating_offset,
)
from models.spec import FeatureSpec


@dataclass
class BaselineConfig:
    """Sizes from the FeatureSpec plus the hyper-parameters every baseline shares."""

    n_users: int
    n_items: int
    n_categories: int
    n_brands: int
    n_shops: int
    n_values: int
    n_domains: int
    feature_sizes: list[int]
    n_behaviors: int
    max_len: int
    embed_dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0
    use_sequences: bool = True  # pool the source behaviour sequences into the input (DNN-multi, MTL)
    sparse_embeddings: bool = True
    sparse_min_rows: int = 4096
    rating_offset: float = 3.0

    @classmethod
    def from_spec(cls, spec: FeatureSpec, overrides: dict) -> BaselineConfig:
        """Sizes from `spec`, hyper-parameters from `overrides`; unknown keys are a TypeError."""
        sizes = spec.vocab_sizes()
        base = {
            "n_users": sizes["user"],
            "n_items": sizes["item"],
            "n_categories": sizes["category"],
            "n_brands": sizes["brand"],
            "n_shops": sizes["shop"],
            "n_values": sizes["value"],
            "n_domains": sizes["domain"],
            "feature_sizes": [len(spec.feature_vocabs[f]) for f in spec.domain_features],
            "n_behaviors": len(spec.behaviors),
            "max_len": spec.max_len,
        }
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        """Plain dict (weights_only-safe) for checkpoints."""
        return asdict(self)


@dataclass
class MTLConfig(BaselineConfig):
    """Multi-domain (multi-task) models: experts, gates and per-domain towers."""

    n_experts: int = 4  # MMoE experts / PLE shared experts per level
    n_specific_experts: int = 1  # PLE experts owned by each domain
    n_levels: int = 2  # PLE extraction levels
    expert_dim: int = 64
    tower_hidden: list[int] = field(default_factory=lambda: [32])
    aux_hidden: list[int] = field(default_factory=lambda: [16])  # STAR's auxiliary network


@dataclass
class BridgeConfig(BaselineConfig):
    """MF-based cross-domain models (CMF, EMCDR, SSCDR, PTUPCDR): two domains, a stage switch."""

    source_domain: int = 0  # domain index of the source domain (set by the stage driver)
    stage: str = "pretrain"  # pretrain | bridge (train/score the bridge for every target row) | serve
    metric: bool = False  # score = -||p - q||^2 (SSCDR's metric space) instead of p . q
    mapping_hidden: int = 64  # EMCDR/SSCDR mapping MLP, PTUPCDR meta network width
    unsup_weight: float = 0.5  # SSCDR: weight of the unsupervised (source-interaction) mapping loss
    use_sequences: bool = False


STAGES: tuple[str, ...] = ("pretrain", "bridge", "serve")


def embedding(cfg: BaselineConfig, rows: int, dim: int | None = None) -> nn.Embedding:
    """An id table; sparse gradients only for large tables (same rule as DACDR)."""
    sparse = cfg.sparse_embeddings and rows >= cfg.sparse_min_rows
    return nn.Embedding(rows, dim or cfg.embed_dim, padding_idx=0, sparse=sparse)


class BaselineModel(nn.Module):
    """Base of every baseline: a global output bias (set to the base rate before training) and the
    rating offset, so ctr rows give logits and rating rows give offset + raw."""

    def __init__(self, cfg: BaselineConfig) -> None:
        """Keep the config (checkpoints save cfg.to_dict()) and the global bias."""
        super().__init__()
        self.cfg = cfg
        self.global_bias = nn.Parameter(torch.zeros(()))

    def finish(self, raw: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """raw (B,) -> logits for ctr rows, ratings for rating rows."""
        return with_rating_offset(raw + self.global_bias, batch["task"], self.cfg.rating_offset)


class InputEmbeddings(nn.Module):
    """The YouTube-DNN style input every deep baseline shares: id and side-info embeddings, the domain
    and its features, and (use_sequences) each behaviour's source sequence mean-pooled."""

    def __init__(self, cfg: BaselineConfig) -> None:
        """Tables sized from the config."""
        super().__init__()
        self.cfg = cfg
        k = cfg.embed_dim
        self.user = embedding(cfg, cfg.n_users)
        self.item = embedding(cfg, cfg.n_items)
        self.category = embedding(cfg, cfg.n_categories)
        self.brand = embedding(cfg, cfg.n_brands)
        self.shop = embedding(cfg, cfg.n_shops)
        self.value = embedding(cfg, cfg.n_values)  # behaviour values in the sequences (stars, price)
        self.domain = nn.Embedding(cfg.n_domains, k, padding_idx=0)
        self.features = nn.ModuleList(nn.Embedding(n, k, padding_idx=0) for n in cfg.feature_sizes)
        self.out_dim = k * (6 + len(cfg.feature_sizes)) + (cfg.n_behaviors * k if cfg.use_sequences else 0)

    def pooled_sequences(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, NB*k): per behaviour, the mean over real positions of item + category + brand + shop + value
        (the same sequence fields DACDR attends over)."""
        packed = PackedSeq.from_mask(batch["seq_item"] != 0)  # real positions only (sequences are sparse)
        elem = (
            self.item(packed.gather(batch["seq_item"]))
            + self.category(packed.gather(batch["seq_category"]))
            + self.brand(packed.gather(batch["seq_brand"]))
            + self.shop(packed.gather(batch["seq_shop"]))
            + self.value(packed.gather(batch["seq_value"]))
        )  # (N,k)
        pooled = packed.segment_sum(elem / packed.count.unsqueeze(-1))  # (B*NB,k); empty sequence -> 0
        return pooled.view(len(batch["seq_item"]), -1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, out_dim) concatenated input features."""
        parts = [
            self.user(batch["user"]),
            self.item(batch["item"]),
            self.category(batch["category"]),
            self.brand(batch["brand"]),
            self.shop(batch["shop"]),
            self.domain(batch["domain"]),
        ]
        parts += [emb(batch["domain_feats"][:, i]) for i, emb in enumerate(self.features)]
        if self.cfg.use_sequences:
            parts.append(self.pooled_sequences(batch))
        return torch.cat(parts, dim=-1)


class DomainLinear(nn.Module):
    """A linear layer with one weight matrix per domain: row b uses W[domain[b]].

    Computed as one matmul against every domain's weights, then a gather: the domain count is small,
    and no (B, in, out) weight tensor is ever built.
    """

    def __init__(self, n_domains: int, in_dim: int, out_dim: int) -> None:
        """Weights (n_domains, in, out), Kaiming-uniform like nn.Linear."""
        super().__init__()
        self.n, self.out_dim = n_domains, out_dim
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(in_dim, n_domains * out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_domains, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """x (B, in), domain (B,) -> (B, out)."""
        y = (x @ self.weight).view(len(x), self.n, self.out_dim)
        return y[torch.arange(len(x), device=x.device), domain] + self.bias[domain]


class DomainTower(nn.Module):
    """One MLP tower per domain ending in a single output (Shared-Bottom, MMoE, PLE)."""

    def __init__(self, n_domains: int, in_dim: int, hidden: list[int], dropout: float) -> None:
        """DomainLinear -> ReLU blocks, then a DomainLinear to 1."""
        super().__init__()
        dims = [in_dim, *hidden]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(DomainLinear(n_domains, a, b) for a, b in pairs)
        self.out = DomainLinear(n_domains, dims[-1], 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B,) raw output of each row's own domain tower."""
        for layer in self.layers:
            x = self.drop(F.relu(layer(x, domain)))
        return self.out(x, domain).squeeze(-1)


class ExpertBank(nn.Module):
    """`n` one-layer ReLU experts evaluated together: (B, in) -> (B, n, dim)."""

    def __init__(self, n: int, in_dim: int, dim: int) -> None:
        """Weights (in, n*dim) so all experts are one matmul."""
        super().__init__()
        self.n, self.dim = n, dim
        self.lin = nn.Linear(in_dim, n * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, n, dim)."""
        return F.relu(self.lin(x)).view(len(x), self.n, self.dim)


class TwoDomainMF(BaselineModel):
    """Matrix factorisation in a source and a target domain (EMCDR, SSCDR, PTUPCDR pre-training).

    Source rows (domain == cfg.source_domain) score with (user_src, item_src), target rows with
    (user_tgt, item_tgt); the two factorisations share no parameter, so training them in one loop on
    the pooled rows is the same as training each on its own rows. Stage `bridge` scores every target
    row with the bridged user vector (`bridged_user`, defined by each subclass); stage `serve` does so
    only for users with no target training rows (`has_target`), as the bridge papers do for cold users.
    """

    def __init__(self, cfg: BridgeConfig) -> None:
        """Two user and two item tables, item biases and a domain bias."""
        super().__init__(cfg)
        if cfg.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {cfg.stage!r}")
        self.user_src = embedding(cfg, cfg.n_users)
        self.item_src = embedding(cfg, cfg.n_items)
        self.user_tgt = embedding(cfg, cfg.n_users)
        self.item_tgt = embedding(cfg, cfg.n_items)
        self.bias_src = embedding(cfg, cfg.n_items, 1)
        self.bias_tgt = embedding(cfg, cfg.n_items, 1)
        self.domain_bias = nn.Embedding(cfg.n_domains, 1, padding_idx=0)
        # users with target-domain training rows (set by the stage driver; saved with the weights)
        self.register_buffer("has_target", torch.zeros(cfg.n_users, dtype=torch.bool))
        small_init(self)

    def score(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Dot product, or the negative squared distance in a metric space (SSCDR)."""
        if self.cfg.metric:
            return -((p - q) ** 2).sum(-1)
        return (p * q).sum(-1)

    def bridged_user(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, k) target-space user vectors built from the source domain (the bridge)."""
        raise NotImplementedError

    def bridged_rows(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) bool: rows whose target-space user vector is the bridged one in the current stage (none in
        pretrain, all in bridge, users without target training rows in serve)."""
        user = batch["user"]
        if self.cfg.stage == "pretrain":
            return torch.zeros_like(user, dtype=torch.bool)
        if self.cfg.stage == "bridge":
            return torch.ones_like(user, dtype=torch.bool)
        return ~self.has_target[user]

    def target_user(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, k) the target-space user vector of each row for the current stage."""
        own = self.user_tgt(batch["user"])
        if self.cfg.stage == "pretrain":
            return own
        return torch.where(self.bridged_rows(batch).unsqueeze(-1), self.bridged_user(batch), own)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        u, i = batch["user"], batch["item"]
        is_src = (batch["domain"] == self.cfg.source_domain).unsqueeze(-1)
        p = torch.where(is_src, self.user_src(u), self.target_user(batch))
        q = torch.where(is_src, self.item_src(i), self.item_tgt(i))
        b = torch.where(is_src, self.bias_src(i), self.bias_tgt(i)).squeeze(-1)
        raw = self.score(p, q) + b + self.domain_bias(batch["domain"]).squeeze(-1)
        return self.finish(raw, batch)


def source_items(model: TwoDomainMF, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, PackedSeq]:
    """The user's source-sequence items (all behaviours pooled, real positions only) as source-space
    vectors (N, k), packed with one segment per batch row."""
    seq = batch["seq_item"].flatten(1).unsqueeze(1)  # (B,1,NB*L): one sequence per row
    packed = PackedSeq.from_mask(seq != 0)
    return model.item_src(packed.gather(seq)), packed
