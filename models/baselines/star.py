"""STAR (Sheng et al. 2021): star-topology FCN, partitioned normalisation and an auxiliary network.

- Star-topology FCN: every layer's weight is W_shared * W_d (element-wise) and bias b_shared + b_d.
- Partitioned normalisation (PN): batch statistics are computed per domain, and each domain keeps its
  own running mean/variance for inference; the scale and shift are gamma*gamma_d and beta+beta_d. (Some
  public re-implementations use one shared BatchNorm or batch statistics at inference; we follow the
  paper.)
- Auxiliary network: a small MLP over the domain indicator (and domain features) whose output is added
  to the main network's logit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.baselines.common import BaselineModel, InputEmbeddings, MTLConfig, small_init
from models.layers import mlp


class PartitionedNorm(nn.Module):
    """Per-domain batch normalisation with per-domain running statistics (no per-row Python)."""

    def __init__(self, n_domains: int, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        """Shared gamma/beta, per-domain gamma_d/beta_d and running statistics."""
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma_d = nn.Parameter(torch.ones(n_domains, dim))
        self.beta_d = nn.Parameter(torch.zeros(n_domains, dim))
        self.register_buffer("running_mean", torch.zeros(n_domains, dim))
        self.register_buffer("running_var", torch.ones(n_domains, dim))

    def forward(self, x: torch.Tensor, dom: torch.Tensor) -> torch.Tensor:
        """x (B, dim), dom (B,) -> normalised x."""
        mean, var = self.running_mean[dom], self.running_var[dom]
        if self.training:
            n_dom = self.running_mean.shape[0]
            cnt = torch.bincount(dom, minlength=n_dom).to(x.dtype).unsqueeze(-1)  # (D,1)
            s = torch.zeros(n_dom, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, dom, x)
            mu = s / cnt.clamp(min=1.0)
            sq = torch.zeros_like(s).index_add_(0, dom, (x - mu[dom]) ** 2)
            v = sq / cnt.clamp(min=1.0)
            ok = (cnt > 1).squeeze(-1)  # a domain with < 2 rows in the batch uses its running stats
            with torch.no_grad():
                unbiased = sq / (cnt - 1).clamp(min=1.0)
                m = self.momentum
                self.running_mean[ok] = (1 - m) * self.running_mean[ok] + m * mu[ok].detach()
                self.running_var[ok] = (1 - m) * self.running_var[ok] + m * unbiased[ok].detach()
            use = ok[dom].unsqueeze(-1)
            mean = torch.where(use, mu[dom], mean)
            var = torch.where(use, v[dom], var)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return x_hat * (self.gamma * self.gamma_d[dom]) + (self.beta + self.beta_d[dom])


class StarLinear(nn.Module):
    """y = x (W * W_d) + (b + b_d) for the row's domain d; W_d starts at ones (= the shared layer)."""

    def __init__(self, n_domains: int, in_dim: int, out_dim: int) -> None:
        """Shared and per-domain weights and biases."""
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.w = nn.Parameter(torch.empty(in_dim, out_dim).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.zeros(out_dim))
        self.w_d = nn.Parameter(torch.ones(n_domains, in_dim, out_dim))
        self.b_d = nn.Parameter(torch.zeros(n_domains, out_dim))

    def forward(self, x: torch.Tensor, dom: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, out): one matmul against every domain's product weight, then a gather."""
        n_dom, d_in, d_out = self.w_d.shape
        w = (self.w.unsqueeze(0) * self.w_d).permute(1, 0, 2).reshape(d_in, n_dom * d_out)
        y = (x @ w).view(len(x), n_dom, d_out)[torch.arange(len(x), device=x.device), dom]
        return y + self.b + self.b_d[dom]


class STAR(BaselineModel):
    """Input embeddings -> PN -> star-topology FCN -> logit, plus the auxiliary network's logit."""

    def __init__(self, cfg: MTLConfig) -> None:
        """PN, the star FCN and the auxiliary network."""
        super().__init__(cfg)
        self.inputs = InputEmbeddings(cfg)
        self.norm = PartitionedNorm(cfg.n_domains, self.inputs.out_dim)
        dims = [self.inputs.out_dim, *cfg.hidden, 1]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(StarLinear(cfg.n_domains, a, b) for a, b in pairs)
        self.drop = nn.Dropout(cfg.dropout)
        k = cfg.embed_dim
        self.aux_domain = nn.Embedding(cfg.n_domains, k, padding_idx=0)
        self.aux = mlp(k * (1 + len(cfg.feature_sizes)), cfg.aux_hidden, 1, cfg.dropout)
        small_init(self)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        dom = batch["domain"]
        x = self.norm(self.inputs(batch), dom)
        for i, layer in enumerate(self.layers):
            x = layer(x, dom)
            if i < len(self.layers) - 1:
                x = self.drop(F.relu(x))
        feats = [self.aux_domain(dom)] + [
            emb(batch["domain_feats"][:, i]) for i, emb in enumerate(self.inputs.features)
        ]
        aux = self.aux(torch.cat(feats, dim=-1))
        return self.finish((x + aux).squeeze(-1), batch)
