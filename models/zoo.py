"""The model zoo: an explicit name -> builder table (train, checkpoints and serving look models up here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from models.baselines.category_transfer import CategoryTransfer
from models.baselines.closed_form import ItemPrior, RatingBias
from models.baselines.cmf import CMF
from models.baselines.common import BaselineConfig, BridgeConfig, MTLConfig
from models.baselines.dnn import DNN
from models.baselines.emcdr import EMCDR
from models.baselines.mmoe import MMoE
from models.baselines.ple import PLE
from models.baselines.ptupcdr import PTUPCDR
from models.baselines.shared_bottom import SharedBottom
from models.baselines.sscdr import SSCDR
from models.baselines.star import STAR
from models.dacdr import DACDR, DACDRConfig
from models.spec import FeatureSpec


@dataclass(frozen=True)
class ModelEntry:
    """A model class, its config dataclass and the config fields this entry fixes (e.g. ablations).

    `config_cls` must provide `from_spec(spec, overrides) -> config` and `to_dict()`, and be
    constructible from that dict; `model_cls(config)` builds the nn.Module whose forward(batch)
    returns (B,) logits (ctr rows) or ratings (rating rows).
    """

    model_cls: type[nn.Module]
    config_cls: type
    fixed: dict[str, Any] = field(default_factory=dict)

    def make_config(self, spec: FeatureSpec, overrides: dict[str, Any]) -> Any:
        """The config for `spec` with `overrides` applied; the entry's fixed fields win."""
        clash = {k for k in overrides if k in self.fixed and overrides[k] != self.fixed[k]}
        if clash:
            raise ValueError(f"overrides {sorted(clash)} contradict this model's fixed settings {self.fixed}")
        return self.config_cls.from_spec(spec, {**overrides, **self.fixed})

    def config_from_dict(self, d: dict[str, Any]) -> Any:
        """Rebuild a config saved by `to_dict` (checkpoints)."""
        return self.config_cls(**d)

    def build(self, config: Any) -> nn.Module:
        """A freshly initialised model."""
        return self.model_cls(config)


MODELS: dict[str, ModelEntry] = {
    "dacdr": ModelEntry(DACDR, DACDRConfig),
    "dacdr_no_da": ModelEntry(DACDR, DACDRConfig, {"use_domain_attention": False}),
    "dacdr_no_ia": ModelEntry(DACDR, DACDRConfig, {"use_item_attention": False}),
    "dacdr_no_both": ModelEntry(
        DACDR, DACDRConfig, {"use_domain_attention": False, "use_item_attention": False}
    ),
    "dacdr_no_prior": ModelEntry(DACDR, DACDRConfig, {"prior": False}),
    # baselines of the paper's experiments (models/baselines/, docs/baselines.md)
    # closed-form / simple estimators (models/baselines/closed_form*.py, category_transfer.py)
    "popularity": ModelEntry(ItemPrior, BaselineConfig, {"use_sequences": False}),
    "item_mean": ModelEntry(ItemPrior, BaselineConfig, {"use_sequences": False}),
    "bias": ModelEntry(RatingBias, BaselineConfig, {"use_sequences": False}),
    "category_transfer": ModelEntry(CategoryTransfer, BaselineConfig),
    "dnn_single": ModelEntry(DNN, BaselineConfig, {"use_sequences": False}),
    "dnn_multi": ModelEntry(DNN, BaselineConfig, {"use_sequences": True}),
    "cmf": ModelEntry(CMF, BridgeConfig),
    "emcdr": ModelEntry(EMCDR, BridgeConfig),
    "sscdr": ModelEntry(SSCDR, BridgeConfig, {"metric": True}),
    "ptupcdr": ModelEntry(PTUPCDR, BridgeConfig),
    "shared_bottom": ModelEntry(SharedBottom, MTLConfig),
    "mmoe": ModelEntry(MMoE, MTLConfig),
    "ple": ModelEntry(PLE, MTLConfig),
    "star": ModelEntry(STAR, MTLConfig),
}


def get_entry(name: str) -> ModelEntry:
    """The zoo entry for `name`; ValueError listing the known names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]
