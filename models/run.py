"""Stage entry: a dataset dir and a zoo name in, a run dir out (the model is built here, fit by models.train).

Closed-form baselines are counted, not trained, and write the same run-dir layout.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.baselines.closed_form_fit import fit_closed_form, fit_prior
from models.checkpoint import load_file, save_checkpoint
from models.dacdr import DACDR
from models.predict import resolve_device
from models.spec import FeatureSpec, read_manifest
from models.train import BEST, LAST, METRICS, TrainConfig, fit, init_output_bias, json_safe, read_split
from models.zoo import get_entry


def train(
    data: Path,
    out: Path,
    model: str = "dacdr",
    device: str = "auto",
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 1024,
    lr: float = 2e-3,
    patience: int = 1,
    resume: bool = False,
    embed_dim: int | None = None,
    attn_dim: int | None = None,
    dropout: float | None = None,
    sparse_embeddings: bool | None = None,
    max_batches_per_epoch: int | None = None,
    progress: bool = True,
    weight_decay: float = TrainConfig.weight_decay,
    eval_batch_size: int = TrainConfig.eval_batch_size,
    model_overrides: dict[str, Any] | None = None,
) -> Path:
    """Train `model` (a zoo name) on dataset dir `data`; returns the run dir `out` (see module doc).

    `model_overrides`: further fields of the model's config (`dacdr train --config`'s model section).
    """
    data, out = Path(data), Path(out)
    cfg = TrainConfig(model=model, device=device, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                      patience=patience, max_batches_per_epoch=max_batches_per_epoch, progress=progress,
                      weight_decay=weight_decay, eval_batch_size=eval_batch_size)
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs ({epochs}) and batch_size ({batch_size}) must be >= 1 and lr ({lr}) > 0")
    dev = resolve_device(device)
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.manual_seed(seed)  # identical init on every rank (DDP also broadcasts it)
    manifest = read_manifest(data)
    train_tbl, val_tbl = read_split(data, "train"), read_split(data, "validation")
    entry = get_entry(model)
    resuming = resume and (out / LAST).is_file()
    if resuming:
        # the saved spec and config, so a resumed run is exactly the run that was stopped
        st = load_file(out / LAST)["checkpoint"]
        spec = FeatureSpec.from_state(st["spec"])
        net = entry.build(entry.config_from_dict(st["config"]))
    else:
        spec = FeatureSpec.fit(train_tbl, manifest)
        overrides = {k: v for k, v in {"embed_dim": embed_dim, "attn_dim": attn_dim, "dropout": dropout,
                                       "sparse_embeddings": sparse_embeddings}.items() if v is not None}
        overrides = {**(model_overrides or {}), **overrides}
        if dev.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            overrides["sparse_embeddings"] = False  # nccl cannot all-reduce sparse gradients
        net = entry.build(entry.make_config(spec, overrides))
    meta = {
        "model_name": model,
        "data": str(data),
        "seed": seed,
        "manifest": manifest,
        "train_rows": train_tbl.num_rows,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    train_t = spec.tensorize(train_tbl)
    if not resuming:
        init_output_bias(net, train_t)
        if isinstance(net, DACDR) and net.cfg.prior:  # start at the closed form, kept if not beaten
            fit_prior(net.prior, spec, train_t, spec.tensorize(val_tbl))
            cfg = replace(cfg, validate_start=True)
        chosen = fit_closed_form(net, spec.values.ids, spec.behaviors, train_t, spec.tensorize(val_tbl))
        if chosen is not None:  # a closed-form baseline: counted, not trained; same run-dir layout
            out.mkdir(parents=True, exist_ok=True)
            save_checkpoint(out / BEST, net, model, spec, json_safe({**meta, "closed_form": chosen}))
            (out / METRICS).write_text(json.dumps({"epoch": 0, "closed_form": chosen}) + "\n")
            return out
    return fit(net, model, spec, train_t, spec.tensorize(val_tbl), out, cfg, dev, json_safe(meta), resume)
