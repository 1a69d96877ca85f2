"""YouTube DNN (Covington et al. 2016): concatenated embeddings -> ReLU tower -> output.

DNN-single trains it per target domain on that domain's rows, without source data (use_sequences off);
DNN-multi trains one model on every target domain plus the source domain's browse->click rows, with the
user's source behaviour sequences mean-pooled into the input (the YouTube DNN's averaged watch history).
"""

from __future__ import annotations

import torch

from models.baselines.common import BaselineConfig, BaselineModel, InputEmbeddings, small_init
from models.layers import mlp


class DNN(BaselineModel):
    """Input embeddings -> MLP(hidden) -> 1."""

    def __init__(self, cfg: BaselineConfig) -> None:
        """Shared input embeddings and the tower."""
        super().__init__(cfg)
        self.inputs = InputEmbeddings(cfg)
        self.tower = mlp(self.inputs.out_dim, cfg.hidden, 1, cfg.dropout)
        small_init(self)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) logits / ratings."""
        return self.finish(self.tower(self.inputs(batch)).squeeze(-1), batch)
