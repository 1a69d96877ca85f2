"""A small synthetic training table with the contract's columns, for model unit tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract as C

FEATURES = ("page", "surface")
DOMAINS = {"t_search": ("search", "app"), "t_feed": ("feed", "web")}


def _lists(values: np.ndarray, lens: np.ndarray) -> pa.ListArray:
    """A list<int64> array from flat values and per-row lengths."""
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int64()))


def synth_table(n_rows: int, seed: int, max_len: int = 10, n_users: int = 200, n_items: int = 300,
                n_cat: int = 8, t0_us: int = 1_700_000_000_000_000,
                domains: dict[str, tuple[str, str]] | None = None) -> pa.Table:
    """Rows whose click probability depends on whether the target item's category is the user's
    preferred one, and the preferred category shows in the source sequences (learnable signal)."""
    domains = DOMAINS if domains is None else domains
    pref = np.random.default_rng(12345).integers(0, n_cat, n_users)  # the same users in every split
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n_rows)
    dom_names = np.array(list(domains))
    dom_idx = rng.integers(0, len(dom_names), n_rows)
    dom = dom_names[dom_idx]
    item = rng.integers(0, n_items, n_rows)
    cat = item % n_cat
    match = cat == pref[user]
    # in t_feed the match matters more: a domain-dependent signal
    lift = np.where(dom == dom_names[-1], 3.0, 2.0)
    p = 1 / (1 + np.exp(-(-1.8 + lift * match)))
    label = (rng.random(n_rows) < p).astype(np.float64)
    cols: dict[str, pa.Array] = {
        C.EVENT_TIME: pa.array(t0_us + rng.integers(0, 86_400_000_000, n_rows), pa.int64()).cast(C.TIMESTAMP),
        C.REQUEST_ID: pa.array([f"r{seed}_{i}" for i in range(n_rows)]),
        C.DOMAIN: pa.array(dom),
        C.USER_ID: pa.array(user, pa.int64()),
        C.ITEM_ID: pa.array(item, pa.int64()),
        C.LABEL: pa.array(label),
        C.CATEGORY_ID: pa.array(cat, pa.int64()),
        C.BRAND_ID: pa.array(np.where(item % 11 == 0, -1, item % 13), pa.int64()),
        C.SHOP_ID: pa.array(item % 5, pa.int64()),
        C.IS_COLD: pa.array(user % 3 == 0),
    }
    for f_i, f in enumerate(FEATURES):
        feat_vals = np.array([domains[d][f_i] for d in dom_names])
        cols[C.domain_feature_col(f)] = pa.array(feat_vals[dom_idx])
    for b in C.BEHAVIOR_TYPES:
        lens = rng.integers(0, max_len + 1, n_rows)
        lens[rng.random(n_rows) < 0.1] = 0  # some empty sequences
        tot = int(lens.sum())
        owner = np.repeat(user, lens)
        from_pref = rng.random(tot) < 0.8
        seq_cat = np.where(from_pref, pref[owner], rng.integers(0, n_cat, tot))
        seq_item = seq_cat + n_cat * rng.integers(0, n_items // n_cat, tot)
        cols[C.seq_col(b, C.ITEM_ID)] = _lists(seq_item, lens)
        cols[C.seq_col(b, C.CATEGORY_ID)] = _lists(seq_item % n_cat, lens)
        cols[C.seq_col(b, C.BRAND_ID)] = _lists(np.where(seq_item % 11 == 0, -1, seq_item % 13), lens)
        cols[C.seq_col(b, C.SHOP_ID)] = _lists(seq_item % 5, lens)
        cols[C.seq_col(b, C.VALUE)] = _lists(np.where(seq_item % 7 == 0, -1, 1 + seq_item % 5), lens)
        cols[C.seq_col(b, C.EVENT_TIME)] = _lists(np.sort(rng.integers(0, t0_us, tot)), lens)
    return pa.table(cols)


def write_synth_dataset(out: Path, seed: int = 0, n_train: int = 4000, n_eval: int = 1000,
                        max_len: int = 10, domains: dict[str, tuple[str, str]] | None = None,
                        n_items: int = 300) -> Path:
    """train/validation/test parquet + manifest.json in the training-table layout."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate((("train", n_train), ("validation", n_eval), ("test", n_eval))):
        tbl = synth_table(n, seed * 10 + i, max_len=max_len, domains=domains, n_items=n_items)
        pq.write_table(tbl, out / f"{split}.parquet")
    manifest = {
        "max_len": max_len,
        "behavior_types": list(C.BEHAVIOR_TYPES),
        "domain_features": list(FEATURES),
        "domains": {d: {C.TASK: C.TASK_CTR, C.ROLE: C.ROLE_TARGET} for d in (domains or DOMAINS)},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
