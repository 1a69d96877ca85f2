"""The closed-form prior: the strongest simple estimator of each task, as an offset DACDR adds to its output.

- ctr domains: the smoothed per-(domain, item) click logit of `popularity`, logit((c + m p_d) / (n + m));
- rating domains: the `bias` model, mu_d + b_i + alpha * b_u, with b_u the user's shrunk mean offset of his
  source ratings, b_u = sum_j (v_j - mu_src) / (n_u + m_u) over the row's `rate` sequence values v_j.

With the prior inside, DACDR starts from the closed form and its learned terms (attention, encoder, head,
transfer, item bias) fit the residual; validation at the start of training keeps the prior if they do not
help (docs/model.md). The tables are buffers: fitted in closed form before training
(models.baselines.closed_form_fit.fit_prior), never touched by the optimiser, saved in the checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from models.layers import PackedSeq


def source_rating_offset(
    seq_item: torch.Tensor, seq_value: torch.Tensor, rate_behavior: int, value_of_token: torch.Tensor,
    source_mean: torch.Tensor, shrinkage: torch.Tensor,
) -> torch.Tensor:
    """(B,) b_u from (B, NB, L) sequences: the shrunk mean offset of the `rate` values (0 without any)."""
    B = seq_item.shape[0]
    if rate_behavior < 0:
        return torch.zeros(B, device=seq_item.device)
    b = rate_behavior
    packed = PackedSeq.from_mask(seq_item[:, b: b + 1] != 0)
    v = value_of_token[packed.gather(seq_value[:, b: b + 1]).long()]  # (N,) raw values, NaN = no value
    known = ~torch.isnan(v)
    dev = torch.where(known, v - source_mean, torch.zeros_like(v))
    return packed.segment_sum(dev) / (packed.segment_sum(known.float()) + shrinkage)


class ClosedFormPrior(nn.Module):
    """raw prior = table[domain, item] + alpha * b_u on rating rows (the 1..5 scale's offset excluded)."""

    def __init__(self, n_domains: int, n_items: int, n_values: int) -> None:
        """Zero tables (a zero prior until fit_prior fills them)."""
        super().__init__()
        self.register_buffer("table", torch.zeros(n_domains, n_items))  # (D, I)
        self.register_buffer("value_of_token", torch.full((n_values,), float("nan")))  # token -> raw value
        self.register_buffer("rate_behavior", torch.tensor(-1))  # index of `rate` in the spec (-1: none)
        self.register_buffer("source_mean", torch.tensor(0.0))
        self.register_buffer("user_shrinkage", torch.tensor(1.0))
        self.register_buffer("alpha", torch.tensor(0.0))

    def user_offset(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(U,) alpha * b_u of each user row (zero on ctr rows: b_u is a rating offset)."""
        b_u = source_rating_offset(batch["seq_item"], batch["seq_value"], int(self.rate_behavior),
                                   self.value_of_token, self.source_mean, self.user_shrinkage)
        return self.alpha * b_u * (batch["task"] == 1).to(b_u.dtype)

    def item_term(self, domain: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """(C,) table[domain, item]."""
        return self.table[domain, item]
