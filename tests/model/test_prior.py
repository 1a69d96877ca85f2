"""DACDR contains the closed-form prior: untrained, it predicts exactly what `popularity` / `bias` predict;
the trainer keeps that start when no epoch beats it; fine-tuning fits the new domain's own prior row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.baselines.closed_form_fit import fit_closed_form, fit_prior
from models.checkpoint import load_checkpoint
from models.dacdr import DACDR, DACDRConfig
from models.zoo import get_entry
from tests.model.test_closed_form import _tensors


def _dacdr(spec, overrides: dict | None = None) -> DACDR:
    """A fresh DACDR for `spec` (seeded)."""
    torch.manual_seed(0)
    return DACDR(DACDRConfig.from_spec(spec, {"embed_dim": 8, "attn_dim": 8, **(overrides or {})}))


def _baseline(name: str, spec, trt: dict, vat: dict) -> torch.nn.Module:
    """The closed-form baseline `name`, fitted."""
    entry = get_entry(name)
    model = entry.build(entry.make_config(spec, {}))
    fit_closed_form(model, spec.values.ids, spec.behaviors, trt, vat)
    return model.eval()


def test_untrained_dacdr_equals_popularity_on_ctr() -> None:
    """Fitted prior, zero head and M_d: DACDR's logits are popularity's, row for row."""
    spec, trt, vat = _tensors(3, 1200, rating=False)
    model = _dacdr(spec).eval()
    fit_prior(model.prior, spec, trt, vat)
    with torch.no_grad():
        np.testing.assert_allclose(model(vat).numpy(), _baseline("popularity", spec, trt, vat)(vat).numpy(),
                                   rtol=0, atol=1e-5)


def test_untrained_dacdr_equals_bias_on_ratings() -> None:
    """The rating prior carries the item mean and the user's shrunk source offset, as `bias` does."""
    spec, trt, vat = _tensors(4, 1200, rating=True)
    model = _dacdr(spec).eval()
    chosen = fit_prior(model.prior, spec, trt, vat)
    base = _baseline("bias", spec, trt, vat)
    with torch.no_grad():
        np.testing.assert_allclose(model(vat).numpy(), base(vat).numpy(), rtol=0, atol=1e-5)
    assert chosen["bias"]["alpha"] == float(base.alpha)


def test_prior_off_is_the_plain_model() -> None:
    """prior=False: no prior buffers, and the output is not the closed form."""
    spec, trt, vat = _tensors(3, 600, rating=False)
    model = _dacdr(spec, {"prior": False})
    assert not any(n.startswith("prior.") for n, _ in model.named_buffers())


def test_split_scoring_adds_the_prior_per_candidate() -> None:
    """score() (user half once, candidates after) equals forward on the same rows with the prior on."""
    spec, trt, vat = _tensors(4, 400, rating=True)
    model = _dacdr(spec).eval()
    fit_prior(model.prior, spec, trt, vat)
    with torch.no_grad():
        user = model.encode_user(vat)
        owner = torch.arange(len(vat["label"]))
        np.testing.assert_allclose(model.score(user, vat, owner).numpy(), model(vat).numpy(), atol=1e-5)


def test_training_keeps_the_prior_when_no_epoch_beats_it(synth_data: Path, tmp_path: Path) -> None:
    """With lr so large that every epoch is worse, the best checkpoint is the start (epoch -1): the prior."""
    from models.run import train

    out = train(synth_data, tmp_path / "run", model="dacdr", device="cpu", seed=0, epochs=2, batch_size=256,
                lr=5.0, patience=2, progress=False)
    _, _, meta = load_checkpoint(out / "checkpoint.pt")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert meta["epoch"] == -1 and not any(r["best"] for r in rows)
    metric = "val_" + meta["val_metric"]
    assert rows and all(r[metric] <= meta["val_value"] for r in rows)
