"""Fine-tune a trained DACDR run on a new target domain (paper 3.5).

Only e_d (domain and domain-feature embeddings), the target item table and the attention projections
W^Q/W^K/W^V are trained; every other parameter is frozen (requires_grad False). The spec is extended
with the new domain's items and feature values; the grown tables keep their old rows and start the
new rows from the unknown (index 1) row, so the frozen source-item table scores new items exactly as
the base model scored "unknown".
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import torch

from features import contract as C
from models.baselines.closed_form_fit import fit_prior
from models.checkpoint import load_checkpoint
from models.dacdr import DACDR, FINETUNE_TRAINABLE
from models.layers import grow_embedding
from models.predict import resolve_device
from models.spec import FeatureSpec, manifest_domains, read_manifest
from models.train import BEST, TrainConfig, fit, json_safe, read_split
from models.vocab import FIRST, UNK


def grow_for_spec(model: DACDR, spec: FeatureSpec) -> DACDR:
    """Resize the model's id tables to an extended spec (old rows kept, new rows = UNK row).

    The per-domain score (M_d, domain bias) of a new domain starts from the mean of the trained
    domains' rows: the average mapping of source interests is a better start than the identity.
    """
    cfg = model.cfg
    n_items, n_domains = len(spec.items), len(spec.domains)
    old_domains = cfg.n_domains
    model.item_tgt = grow_embedding(model.item_tgt, n_items, UNK)
    model.item_src = grow_embedding(model.item_src, n_items, UNK)
    model.domain_emb = grow_embedding(model.domain_emb, n_domains, UNK)
    if cfg.item_bias:
        model.item_bias = grow_embedding(model.item_bias, n_items, UNK)
    if cfg.per_domain:
        for name in ("domain_bilinear", "domain_bias"):
            grown = grow_embedding(getattr(model, name), n_domains, UNK)
            with torch.no_grad():
                grown.weight[old_domains:] = grown.weight[FIRST:old_domains].mean(0)
            setattr(model, name, grown)
    sizes = []
    for i, f in enumerate(spec.domain_features):
        model.feature_embs[i] = grow_embedding(model.feature_embs[i], len(spec.feature_vocabs[f]), UNK)
        sizes.append(len(spec.feature_vocabs[f]))
    if cfg.prior:  # new rows 0 until fit_prior fills the fine-tuned domain's row
        table = model.prior.table
        grown_table = table.new_zeros((n_domains, n_items))
        grown_table[: table.shape[0], : table.shape[1]] = table
        model.prior.table = grown_table
    cfg.n_items, cfg.n_domains, cfg.feature_sizes = n_items, n_domains, sizes
    return model


def freeze_for_finetune(model: DACDR) -> list[str]:
    """requires_grad only on the fine-tuned parameters; returns their names."""
    trained = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(FINETUNE_TRAINABLE))
        if p.requires_grad:
            trained.append(name)
    return trained


def _domain_rows(data: Path, split: str, domain: str):  # -> pa.Table
    """Rows of `domain` in one split; ValueError when there are none."""
    tbl = read_split(data, split)
    rows = tbl.filter(pc.equal(tbl.column(C.DOMAIN), domain))
    if rows.num_rows == 0:
        raise ValueError(f"{data}/{split}.parquet has no rows of domain {domain!r}")
    return rows


def finetune(
    base: Path,
    domain: str,
    data: Path,
    out: Path,
    epochs: int = 10,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 256,
    lr: float = 2e-3,
    patience: int = 2,
    progress: bool = True,
    max_batches_per_epoch: int | None = None,
) -> Path:
    """Fine-tune BASE/checkpoint.pt on `domain`'s rows of dataset `data`; returns the new run dir `out`."""
    base, data, out = Path(base), Path(data), Path(out)
    C.check_domain_name(domain)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model, spec, base_meta = load_checkpoint(base / BEST, map_location="cpu")
    if not isinstance(model, DACDR):
        raise ValueError(f"{base}: fine-tuning needs a DACDR checkpoint, got {base_meta['model_name']!r}")
    doms = manifest_domains(read_manifest(data))
    if domain not in doms:
        raise ValueError(f"{data}/manifest.json does not describe domain {domain!r} (has {sorted(doms)})")
    train_tbl, val_tbl = _domain_rows(data, "train", domain), _domain_rows(data, "validation", domain)
    added = spec.extend(train_tbl, tasks={domain: doms[domain][C.TASK]})
    grow_for_spec(model, spec)
    trained = freeze_for_finetune(model)
    cfg = TrainConfig(model=base_meta["model_name"], device=device, seed=seed, epochs=epochs,
                      batch_size=batch_size, lr=lr, patience=patience, progress=progress,
                      max_batches_per_epoch=max_batches_per_epoch, validate_start=model.cfg.prior)
    meta = json_safe({
        "model_name": base_meta["model_name"], "data": str(data), "seed": seed, "finetuned_from": str(base),
        "finetune_domain": domain, "spec_added": added, "trained_parameters": trained,
        "train_rows": train_tbl.num_rows, "base_data": base_meta.get("data"),
        "manifest": read_manifest(data),
    })
    train_t, val_t = spec.tensorize(train_tbl), spec.tensorize(val_tbl)
    if model.cfg.prior:  # the domain's own closed form (its popularity), from its rows only
        meta["prior"] = json_safe(fit_prior(model.prior, spec, train_t, val_t))
    return fit(model, base_meta["model_name"], spec, train_t, val_t, out, cfg, dev, meta, resume=False)
