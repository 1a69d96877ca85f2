"""FeatureSpec: vocabularies, left padding, extend, serialisation and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import torch

from features import contract as C
from models.spec import FeatureSpec
from models.vocab import PAD, UNK, IntVocab, StrVocab
from tests.model.synth import synth_table

MANIFEST = {
    "max_len": 8,
    "behavior_types": list(C.BEHAVIOR_TYPES),
    "domain_features": ["page", "surface"],
    "domains": {"t_search": {"task": "ctr", "role": "target"}, "t_feed": {"task": "ctr", "role": "target"}},
}


def test_int_vocab_indices() -> None:
    """0 pad, 1 unknown (incl. -1 and unseen), real ids from 2 in sorted order."""
    v = IntVocab.fit(np.array([30, 10, 20, 10, -1]))
    assert list(v.lookup(np.array([10, 20, 30, 99, -1]))) == [2, 3, 4, UNK, UNK]
    assert len(v) == 5
    assert v.extend(np.array([5, 10, 40])) == 2  # 5 and 40 are new, appended after the old ids
    assert list(v.lookup(np.array([10, 20, 30, 5, 40]))) == [2, 3, 4, 5, 6]
    s = StrVocab.fit(np.array(["b", "a", None, "b"], dtype=object))
    assert list(s.lookup(["a", "b", "zz"])) == [2, 3, UNK]


def test_tensorize_left_pads_newest_last() -> None:
    """Sequences are left-padded: the newest (last) element lands at position L-1."""
    tbl = synth_table(50, seed=1, max_len=8)
    spec = FeatureSpec.fit(tbl, MANIFEST)
    batch = spec.tensorize(tbl)
    assert batch["seq_item"].shape == (50, len(C.BEHAVIOR_TYPES), 8)
    assert batch["domain_feats"].shape == (50, 2)
    col = tbl.column(C.seq_col("click", C.ITEM_ID)).to_pylist()
    bi = spec.behaviors.index("click")
    for row, items in enumerate(col[:20]):
        got = batch["seq_item"][row, bi].tolist()
        want = [PAD] * (8 - len(items)) + spec.items.lookup(np.array(items, dtype=np.int64)).tolist()
        assert got == want
    # unknown brand (-1) maps to UNK both for the target and inside sequences
    brands = np.array(tbl.column(C.BRAND_ID).to_pylist())
    assert (batch["brand"].numpy()[brands == -1] == UNK).all()


def test_state_round_trip_weights_only_and_extend_keeps_indices() -> None:
    """to_state survives torch.save/torch.load(weights_only=True); extend keeps every old index."""
    tbl = synth_table(200, seed=2, max_len=8)
    spec = FeatureSpec.fit(tbl, MANIFEST)
    buf = io.BytesIO()
    torch.save(spec.to_state(), buf)
    buf.seek(0)
    back = FeatureSpec.from_state(torch.load(buf, weights_only=True))
    a, b = spec.tensorize(tbl), back.tensorize(tbl)
    assert all(torch.equal(a[k], b[k]) for k in a)
    new = synth_table(100, seed=3, max_len=8, n_items=400, domains={"t_new": ("feed", "kiosk")})
    before = spec.tensorize(tbl)
    added = back.extend(new, tasks={"t_new": "ctr"})
    assert added["items"] > 0 and added["domains"] == 1 and added["feature:surface"] == 1
    assert added["feature:page"] == 0  # "feed" was already known
    after = back.tensorize(tbl)
    assert all(torch.equal(before[k], after[k]) for k in before)
    t_new = back.tensorize(new)
    assert (t_new["domain"] == len(back.domains) - 1).all()
    assert (t_new["item"] != UNK).all()


def test_clear_errors() -> None:
    """Missing columns, too-long sequences and unknown domains are named."""
    tbl = synth_table(20, seed=4, max_len=8)
    spec = FeatureSpec.fit(tbl, MANIFEST)
    with pytest.raises(ValueError, match="missing column"):
        spec.tensorize(tbl.drop_columns([C.seq_col("cart", C.BRAND_ID)]))
    short = FeatureSpec.fit(tbl, {**MANIFEST, "max_len": 2})
    with pytest.raises(ValueError, match="max_len=2"):
        short.tensorize(tbl)
    other = tbl.set_column(tbl.column_names.index(C.DOMAIN), C.DOMAIN, pa.array(["nowhere"] * 20))
    with pytest.raises(ValueError, match="nowhere"):
        spec.tensorize(other)
