"""Batched inference shared by evaluation, training-time validation and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from models.spec import FeatureSpec, trim_padding


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when present else cpu; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def to_outputs(raw: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
    """Model outputs -> predictions: probabilities for ctr rows (task 0), ratings as they are."""
    return torch.where(task == 0, torch.sigmoid(raw), raw)


@torch.no_grad()
def predict_tensors(
    model: nn.Module, batch: dict[str, torch.Tensor], batch_size: int, device: torch.device
) -> np.ndarray:
    """Probabilities (ctr rows) or ratings (rating rows) for a tensorized frame."""
    was_training = model.training
    model.eval()
    n = len(batch["item"])
    out = np.empty(n, dtype=np.float64)
    use_bf16 = device.type == "cuda"
    for lo in range(0, n, batch_size):
        part = trim_padding({k: v[lo: lo + batch_size] for k, v in batch.items()})
        part = {k: v.to(device, non_blocking=True) for k, v in part.items()}
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            raw = model(part).float()
        pred = to_outputs(raw, part["task"])
        out[lo: lo + len(raw)] = pred.cpu().numpy()
    model.train(was_training)
    return out



@torch.no_grad()
def predict_split(
    model: nn.Module, users: dict[str, torch.Tensor], items: dict[str, torch.Tensor], owner: np.ndarray
) -> np.ndarray:
    """DACDR's serving path: the user half once per row of `users`, candidate `items` (C,) scored
    against user row owner[c]. Same numbers as predict on the repeated rows (tests)."""
    was_training = model.training
    if was_training:  # eval() walks every submodule: ~5 us each, a real share of a 1-candidate query
        model.eval()
    own = torch.from_numpy(np.ascontiguousarray(owner, dtype=np.int64))
    users = trim_padding(users)
    raw = model.score(model.encode_user(users), items, own).float()
    pred = to_outputs(raw, users["task"].index_select(0, own))
    if was_training:
        model.train()
    return pred.numpy().astype(np.float64)

def predict(
    model: nn.Module, spec: FeatureSpec, df: pd.DataFrame | pa.Table, batch_size: int = 4096,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Scores for every row of a training-table-shaped frame (probabilities for ctr, ratings for rating)."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return predict_tensors(model, spec.tensorize(df), batch_size, dev)
