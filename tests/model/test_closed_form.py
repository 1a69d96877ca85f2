"""The closed-form baselines against brute-force computations (per-row Python loops, on purpose)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.baselines.closed_form_fit import SHRINKAGE_GRID, fit_closed_form, item_table
from models.metrics import auc, rmse
from models.spec import FeatureSpec
from models.zoo import get_entry
from tests.model.synth import synth_table

MANIFEST = {
    "max_len": 6, "behavior_types": ["browse", "click", "rate"], "domain_features": ["page", "surface"],
    "domains": {"t_search": {"task": "ctr", "role": "target"}, "t_feed": {"task": "ctr", "role": "target"}},
}


def _tensors(seed: int, n: int, rating: bool) -> tuple[FeatureSpec, dict, dict]:
    """A fitted spec and train/validation tensors; rating=True turns labels into 1..5 stars."""
    tr, va = synth_table(n, seed, max_len=6), synth_table(n // 2, seed + 1, max_len=6)
    spec = FeatureSpec.fit(tr, MANIFEST)
    trt, vat = spec.tensorize(tr), spec.tensorize(va)
    if rating:
        g = torch.Generator().manual_seed(seed)
        for t in (trt, vat):
            t["label"] = (1 + torch.randint(0, 5, (len(t["label"]),), generator=g)
                          + 0.5 * (t["item"] % 3 == 0)).float().clamp(max=5)
            t["task"] = torch.ones_like(t["task"])
    return spec, trt, vat


def _brute_item_table(t: dict, m: float, is_ctr: bool) -> dict[tuple[int, int], float]:
    """(domain, item) -> smoothed logit / shrunk mean, by dict accumulation."""
    ys: dict[int, list[float]] = {}
    pairs: dict[tuple[int, int], list[float]] = {}
    for d, i, y in zip(t["domain"].tolist(), t["item"].tolist(), t["label"].tolist(), strict=True):
        ys.setdefault(d, []).append(y)
        pairs.setdefault((d, i), []).append(y)
    out = {}
    for (d, i), v in pairs.items():
        mu = sum(ys[d]) / len(ys[d])
        if is_ctr:
            p = (sum(v) + m * mu) / (len(v) + m)
            out[(d, i)] = math.log(p / (1 - p))
        else:
            out[(d, i)] = mu + sum(y - mu for y in v) / (len(v) + m)
    return out


@pytest.mark.parametrize("is_ctr", [True, False])
def test_item_table_matches_brute_force(is_ctr: bool) -> None:
    """Every (domain, item) cell seen in training equals the dict-accumulated formula."""
    spec, trt, _ = _tensors(0, 1500, rating=not is_ctr)
    n_dom, n_items = len(spec.domains), len(spec.items)
    table = item_table(trt, n_dom, n_items, 5.0, is_ctr)
    brute = _brute_item_table(trt, 5.0, is_ctr)
    got = np.array([float(table[d, i]) for d, i in brute])
    assert np.allclose(got, np.array(list(brute.values())), atol=1e-4)


def test_popularity_shrinkage_is_the_validation_argmax() -> None:
    """The fitted shrinkage is the grid point with the best validation AUC, recomputed here."""
    spec, trt, vat = _tensors(1, 2000, rating=False)
    entry = get_entry("popularity")
    model = entry.build(entry.make_config(spec, {}))
    chosen = fit_closed_form(model, spec.values.ids, spec.behaviors, trt, vat)
    aucs = {}
    for m in SHRINKAGE_GRID:
        tab = item_table(trt, len(spec.domains), len(spec.items), m, True)
        aucs[m] = auc(vat["label"].numpy(), tab[vat["domain"], vat["item"]].numpy())
    assert chosen["shrinkage"] == max(aucs, key=aucs.get)
    assert chosen["val_value"] == pytest.approx(max(aucs.values()))


def test_bias_user_offset_matches_brute_force() -> None:
    """b_u = sum (v - mu_src) / (n + m_u) over the row's `rate` values; alpha/m_u picked on validation."""
    spec, trt, vat = _tensors(2, 1500, rating=True)
    entry = get_entry("bias")
    model = entry.build(entry.make_config(spec, {}))
    chosen = fit_closed_form(model, spec.values.ids, spec.behaviors, trt, vat)
    b = spec.behaviors.index("rate")
    raw_of = {i + 2: float(v) for i, v in enumerate(spec.values.ids)}
    rows = zip(trt["seq_item"][:, b].tolist(), trt["seq_value"][:, b].tolist(), strict=True)
    vals = [raw_of[tok] for row_i, row_t in rows
            for i, tok in zip(row_i, row_t, strict=True) if i != 0 and tok in raw_of]
    mu_src = sum(vals) / len(vals)
    assert float(model.source_mean) == pytest.approx(mu_src, abs=1e-5)
    got = model.user_offset(vat).numpy()
    for r in range(0, len(got), 37):
        v = [raw_of[tok] for i, tok in zip(vat["seq_item"][r, b].tolist(), vat["seq_value"][r, b].tolist(),
                                           strict=True) if i != 0 and tok in raw_of]
        want = sum(x - mu_src for x in v) / (len(v) + float(model.user_shrinkage))
        assert got[r] == pytest.approx(want, abs=1e-5)
    # the validation RMSE reported is the model's own, and no worse than the item mean alone (alpha 0)
    with torch.no_grad():
        pred = model(vat).numpy()
    assert chosen["val_value"] == pytest.approx(rmse(vat["label"].numpy(), pred), abs=1e-6)
    # served on the rating scale: the predictions' mean is the labels' mean, not shifted by the offset
    assert abs(pred.mean() - float(vat["label"].mean())) < 0.2
    brute = _brute_item_table(trt, chosen["shrinkage"], is_ctr=False)
    d, i = next(iter(brute))
    one = {k: v[:1].clone() for k, v in vat.items()}
    one["domain"][0], one["item"][0] = d, i
    model.alpha.fill_(0.0)
    with torch.no_grad():
        assert float(model(one)[0]) == pytest.approx(brute[(d, i)], abs=1e-4)
    model.alpha.fill_(0.0)
    with torch.no_grad():
        assert rmse(vat["label"].numpy(), model(vat).numpy()) >= chosen["val_value"] - 1e-9


def test_bias_without_rate_behaviour_says_no_signal() -> None:
    """A zone whose source has no `rate` sequences: b_u is 0 and the fit says so."""
    manifest = {**MANIFEST, "behavior_types": ["browse", "click"]}
    tr, va = synth_table(800, 3, max_len=6), synth_table(400, 4, max_len=6)
    spec = FeatureSpec.fit(tr, manifest)
    trt, vat = spec.tensorize(tr), spec.tensorize(va)
    entry = get_entry("bias")
    model = entry.build(entry.make_config(spec, {}))
    chosen = fit_closed_form(model, spec.values.ids, spec.behaviors, trt, vat)
    assert chosen["no_signal"] == 1.0 and chosen["alpha"] == 0.0
    assert torch.count_nonzero(model.user_offset(vat)) == 0


def test_category_transfer_shares_match_brute_force() -> None:
    """h_u^b is the per-behaviour share of each category among the row's real sequence positions."""
    spec, trt, _ = _tensors(5, 300, rating=False)
    entry = get_entry("category_transfer")
    model = entry.build(entry.make_config(spec, {}))
    h = model.shares(trt).view(len(trt["item"]), len(spec.behaviors), -1).numpy()
    n_cat = h.shape[-1]
    for r in range(0, len(h), 11):
        for b in range(len(spec.behaviors)):
            cats = [c for i, c in zip(trt["seq_item"][r, b].tolist(), trt["seq_category"][r, b].tolist(),
                                      strict=True) if i != 0]
            want = np.bincount(cats, minlength=n_cat) / max(len(cats), 1)
            assert np.allclose(h[r, b], want, atol=1e-6)


def test_empty_behaviours_leave_the_spec() -> None:
    """A behaviour type without a single sequence element is dropped from the spec (not an empty slot)."""
    import pyarrow as pa

    from features import contract as C

    tr = synth_table(300, 6, max_len=6)
    for f in C.SEQ_FIELDS:
        col = C.seq_col("rate", f)
        tr = tr.set_column(tr.column_names.index(col), col,
                           pa.array([[]] * tr.num_rows, type=tr.column(col).type))
    spec = FeatureSpec.fit(tr, MANIFEST)
    assert spec.behaviors == ["browse", "click"]
    full = FeatureSpec.fit(synth_table(300, 6, max_len=6), MANIFEST)
    assert full.behaviors == ["browse", "click", "rate"]
