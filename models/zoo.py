"""The model zoo: an explicit name -> builder table (train, checkpoints and serving look models up here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

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
}


def get_entry(name: str) -> ModelEntry:
    """The zoo entry for `name`; ValueError listing the known names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]
