"""Self-describing checkpoints: config, feature spec, weights and metadata, readable with weights_only=True.

Layout of checkpoint.pt (a plain dict):
    format      "dacdr-checkpoint/2" (2: sequences carry behaviour-value tokens; /1 files must be retrained)
    model_name  zoo key, e.g. "dacdr"
    config      the model config as a dict
    spec        FeatureSpec.to_state() (vocabularies as int64 tensors / lists of str)
    state_dict  model weights
    meta        dict of str/int/float/list/dict: data days, val metric, epoch, seed, ...
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.spec import FeatureSpec
from models.zoo import get_entry

FORMAT = "dacdr-checkpoint/2"
# formats this version cannot rebuild, and why (a clear error instead of a state-dict mismatch)
RETIRED_FORMATS: dict[str, str] = {
    "dacdr-checkpoint/1": "written before sequences carried behaviour-value tokens (seq_<behavior>_value)",
}


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temp file beside `path`, then rename (never a half-written checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def checkpoint_dict(model: nn.Module, model_name: str, spec: FeatureSpec, meta: dict) -> dict:
    """The checkpoint payload of a model (weights copied to CPU)."""
    return {
        "format": FORMAT,
        "model_name": model_name,
        "config": model.cfg.to_dict(),
        "spec": spec.to_state(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": meta,
    }


def save_checkpoint(path: Path, model: nn.Module, model_name: str, spec: FeatureSpec, meta: dict) -> Path:
    """Write a self-describing checkpoint atomically."""
    return atomic_save(checkpoint_dict(model, model_name, spec, meta), path)


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, FeatureSpec, dict]:
    """(model in eval mode, spec, meta) rebuilt from the checkpoint alone (torch.load weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ck = torch.load(path, map_location=map_location, weights_only=True)
    fmt = ck.get("format") if isinstance(ck, dict) else None
    if fmt in RETIRED_FORMATS:
        raise ValueError(f"{path}: a {fmt} checkpoint, {RETIRED_FORMATS[fmt]}; retrain it with this version")
    if fmt != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    entry = get_entry(ck["model_name"])
    model = entry.build(entry.config_from_dict(ck["config"]))
    model.load_state_dict(ck["state_dict"])
    model.to(map_location).eval()
    meta = {**ck["meta"], "model_name": ck["model_name"]}
    return model, FeatureSpec.from_state(ck["spec"]), meta
