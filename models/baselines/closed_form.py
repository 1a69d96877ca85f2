"""The "no deep learning" rows every results table starts with: estimators with a closed form.

- ItemPrior (`popularity` for ctr, `item_mean` for ratings): per (domain, item), the smoothed click rate
  (c + m p_d) / (n + m) as a logit, or the shrunk mean rating mu_d + sum(r - mu_d) / (n + m). No user.
- RatingBias (`bias`): mu_d + b_i + alpha * b_u with b_i the shrunk item offset and b_u the user's
  shrunk mean offset of his *source-domain* ratings (read from the row's `rate` sequence values), so a
  cold-start user still gets one.

The models only hold the fitted tables as buffers; fitting (counting, the shrinkage grid on validation)
is in models/baselines/closed_form_fit.py.
"""

from __future__ import annotations

import torch

from models.baselines.common import BaselineConfig, BaselineModel
from models.prior import source_rating_offset


class ItemPrior(BaselineModel):
    """raw = table[domain, item]: a smoothed item click logit (ctr) or shrunk item mean (rating)."""

    def __init__(self, cfg: BaselineConfig) -> None:
        """A (domains, items) table of fitted scores (the global bias stays 0)."""
        super().__init__(cfg)
        self.register_buffer("table", torch.zeros(cfg.n_domains, cfg.n_items))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        return self.finish(self.table[batch["domain"], batch["item"]], batch)


class RatingBias(ItemPrior):
    """raw = table[domain, item] + alpha * b_u, b_u = sum_j (v_j - mu_src) / (n_u + m_u) over the row's
    source ratings v_j (the `rate` sequence)."""

    def __init__(self, cfg: BaselineConfig) -> None:
        """The item table, the raw value of each value token, the source mean and the user shrinkage."""
        super().__init__(cfg)
        self.register_buffer("value_of_token", torch.zeros(cfg.n_values))  # token index -> raw value
        self.register_buffer("rate_behavior", torch.tensor(-1))  # index of `rate` in the spec (-1: none)
        self.register_buffer("source_mean", torch.tensor(0.0))
        self.register_buffer("user_shrinkage", torch.tensor(1.0))
        self.register_buffer("alpha", torch.tensor(0.0))

    def user_offset(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) b_u from the row's source ratings (0 without any)."""
        return source_rating_offset(batch["seq_item"], batch["seq_value"], int(self.rate_behavior),
                                    self.value_of_token, self.source_mean, self.user_shrinkage)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) ratings (logits on ctr rows, where b_u carries no rating)."""
        raw = self.table[batch["domain"], batch["item"]] + self.alpha * self.user_offset(batch)
        return self.finish(raw, batch)
