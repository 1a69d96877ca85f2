"""FeatureSpec: the one feature specification every model shares (vocabularies, max_len, tensorize).

Index convention for every vocabulary: 0 = padding, 1 = unknown / out-of-vocabulary (incl. -1 and
ids unseen in training), real values from 2. Sequences are LEFT-padded to max_len, so the newest
element of every behaviour sits at position L-1.

Batch dict keys produced by `FeatureSpec.tensorize` (B rows, NB behaviour types, L = max_len,
F domain features); every model's forward reads only these:

    user          (B,)        int64  user-id index
    item          (B,)        int64  target item index
    category      (B,)        int64  target item side info
    brand         (B,)        int64
    shop          (B,)        int64
    domain        (B,)        int64  domain-name index
    domain_feats  (B, F)      int64  one index per domain feature (own vocabulary per feature)
    task          (B,)        int64  0 = ctr (output is a logit), 1 = rating (output is a rating)
    seq_item      (B, NB, L)  int32  source behaviour sequences, left-padded with 0 (int32: the
    seq_category  (B, NB, L)  int32  aligned side-info sequences      sequences dominate memory)
    seq_brand     (B, NB, L)  int32
    seq_shop      (B, NB, L)  int32
    seq_value     (B, NB, L)  int32  aligned behaviour-value tokens (stars, rounded price; 1 = none)
    label         (B,)        float32 (only when the frame has a label column)
    is_cold       (B,)        bool    (only when the frame has an is_cold column)

A position is real iff seq_item != 0 (unknown source items are index 1, still real positions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from features import contract as C
from models.vocab import IntVocab, StrVocab

TASK_INDEX: dict[str, int] = {C.TASK_CTR: 0, C.TASK_RATING: 1}
# batch keys of the target item and its side info, and the matching sequence keys
SEQ_KEYS: dict[str, str] = {
    C.ITEM_ID: "seq_item",
    C.CATEGORY_ID: "seq_category",
    C.BRAND_ID: "seq_brand",
    C.SHOP_ID: "seq_shop",
    C.VALUE: "seq_value",
}
SIDE_KEYS: dict[str, str] = {C.CATEGORY_ID: "category", C.BRAND_ID: "brand", C.SHOP_ID: "shop"}
_SEQ_BATCH_KEYS = frozenset(SEQ_KEYS.values())



def trim_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the leading all-padding positions shared by every row of a batch (left padding).

    Attention and pooling mask padding, so the result is the same; the work shrinks from max_len
    to the batch's longest real sequence (most users' histories are far shorter than max_len).
    """
    real = (batch["seq_item"] != 0).any(dim=1).any(dim=0)  # (L,) positions real in some row
    L = real.numel()
    start = int(real.int().argmax()) if bool(real.any()) else L - 1  # keep at least one position
    if start == 0:
        return batch
    return {k: (v[..., start:] if k in _SEQ_BATCH_KEYS else v) for k, v in batch.items()}

def subset(t: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows of a tensorized frame where `mask` is True."""
    idx = torch.nonzero(mask).squeeze(1)
    return {k: v.index_select(0, idx) for k, v in t.items()}


def observed_behaviors(tbl: pa.Table, behaviors: list[str]) -> list[str]:
    """The behaviour types with at least one sequence element in `tbl` (all of them if none has any).

    A type with no data (e.g. `rate` in click logs) would only carry empty slots through every model.
    """
    seen = [b for b in behaviors
            if pc.sum(pc.fill_null(pc.list_value_length(tbl.column(C.seq_col(b, C.ITEM_ID))), 0)).as_py()]
    return seen or list(behaviors)


def read_manifest(data: Path) -> dict:
    """The dataset's manifest.json (written by features.dataset.build_dataset)."""
    path = Path(data) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest.json in the dataset folder {data}")
    return json.loads(path.read_text())


def manifest_domains(manifest: dict) -> dict[str, dict[str, str]]:
    """{domain: {"task": ..., "role": ...}} from a manifest."""
    doms = manifest.get("domains")
    if isinstance(doms, list):  # a list of {"domain": name, "task": .., "role": ..} records
        doms = {d[C.DOMAIN]: d for d in doms}
    if not isinstance(doms, dict) or not doms:
        raise ValueError("manifest has no 'domains' mapping of each domain's task and role")
    out = {}
    for name, info in doms.items():
        task = info[C.TASK] if isinstance(info, dict) else str(info)
        if task not in C.TASKS:
            raise ValueError(f"manifest: domain {name!r} has task {task!r}, expected one of {C.TASKS}")
        out[name] = {C.TASK: task, C.ROLE: info.get(C.ROLE, C.ROLE_TARGET) if isinstance(info, dict) else ""}
    return out


def _list_column(tbl: pa.Table, name: str) -> pa.ListArray:
    """One list<int64> column as a single ListArray (chunks combined)."""
    col = tbl.column(name)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_large_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    if not pa.types.is_list(arr.type):
        raise ValueError(f"column {name!r} must be a list<int64>, got {arr.type}")
    return arr


def _as_table(df: pd.DataFrame | pa.Table) -> pa.Table:
    """A training-table frame as an arrow Table (list columns stay columnar)."""
    if isinstance(df, pa.Table):
        return df
    # pandas metadata would name ArrowDtype(list) columns in a form pandas cannot parse back
    return pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)


@dataclass
class FeatureSpec:
    """Behaviour types, max_len, domain features, vocabularies and each domain's task."""

    behaviors: list[str]
    max_len: int
    domain_features: list[str]
    domain_tasks: dict[str, str]
    users: IntVocab
    items: IntVocab
    categories: IntVocab
    brands: IntVocab
    shops: IntVocab
    values: IntVocab  # behaviour-value tokens seen in the sequences
    domains: StrVocab
    feature_vocabs: dict[str, StrVocab]

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def fit(cls, train_df: pd.DataFrame | pa.Table, manifest: dict) -> FeatureSpec:
        """Fit every vocabulary on the training split (items/side info: target and sequence values)."""
        tbl = _as_table(train_df)
        behaviors = list(manifest.get("behavior_types") or manifest.get("behaviors") or [])
        if not behaviors:
            behaviors = [b for b in C.BEHAVIOR_TYPES if C.seq_col(b, C.ITEM_ID) in tbl.column_names]
        unknown = [b for b in behaviors if b not in C.BEHAVIOR_TYPES]
        if unknown:
            raise ValueError(f"manifest names unknown behaviour types {unknown}")
        max_len = int(manifest["max_len"])
        if max_len < 1:
            raise ValueError(f"manifest max_len must be >= 1, got {max_len}")
        feats = manifest.get("domain_features")
        if feats is None:
            feats = [c[len(C.DOMAIN_FEATURE_PREFIX):] for c in tbl.column_names
                     if c.startswith(C.DOMAIN_FEATURE_PREFIX)]
        feats = list(feats)
        cls._check_columns(tbl, behaviors, feats, need_label=True)
        behaviors = observed_behaviors(tbl, behaviors)
        tasks = {d: v[C.TASK] for d, v in manifest_domains(manifest).items()}

        def ids(field_: str, target_col: str | None) -> np.ndarray:
            """All raw values of a field in the target column and every behaviour's sequence."""
            parts = [tbl.column(target_col).to_numpy()] if target_col else []
            for b in behaviors:
                parts.append(_list_column(tbl, C.seq_col(b, field_)).flatten().fill_null(-1).to_numpy())
            return np.concatenate(parts) if parts else np.empty(0, np.int64)

        df_dom = tbl.select([C.DOMAIN, *[C.domain_feature_col(f) for f in feats]]).to_pandas()
        return cls(
            behaviors=behaviors,
            max_len=max_len,
            domain_features=feats,
            domain_tasks=tasks,
            users=IntVocab.fit(tbl.column(C.USER_ID).to_numpy()),
            items=IntVocab.fit(ids(C.ITEM_ID, C.ITEM_ID)),
            categories=IntVocab.fit(ids(C.CATEGORY_ID, C.CATEGORY_ID)),
            brands=IntVocab.fit(ids(C.BRAND_ID, C.BRAND_ID)),
            shops=IntVocab.fit(ids(C.SHOP_ID, C.SHOP_ID)),
            values=IntVocab.fit(ids(C.VALUE, None)),
            domains=StrVocab(sorted(set(tasks) | set(df_dom[C.DOMAIN].astype(str).unique()))),
            feature_vocabs={f: StrVocab.fit(df_dom[C.domain_feature_col(f)]) for f in feats},
        )

    @staticmethod
    def _check_columns(tbl: pa.Table, behaviors: list[str], feats: list[str], need_label: bool) -> None:
        """ValueError naming every missing column."""
        need = [C.DOMAIN, C.USER_ID, C.ITEM_ID, *C.SIDE_INFO]
        need += [C.domain_feature_col(f) for f in feats]
        need += [C.seq_col(b, f) for b in behaviors for f in SEQ_KEYS]
        if need_label:
            need.append(C.LABEL)
        have = set(tbl.column_names)  # a property that builds a new list on every access
        missing = [c for c in need if c not in have]
        if missing:
            raise ValueError(f"training-table frame is missing column(s) {missing}")

    def extend(self, new_df: pd.DataFrame | pa.Table, tasks: dict[str, str] | None = None) -> dict[str, int]:
        """Add a new domain's items, domain name and domain-feature values (existing indices kept)."""
        tbl = _as_table(new_df)
        self._check_columns(tbl, self.behaviors, self.domain_features, need_label=False)
        added = {"items": self.items.extend(tbl.column(C.ITEM_ID).to_numpy())}
        dom = tbl.select([C.DOMAIN, *[C.domain_feature_col(f) for f in self.domain_features]]).to_pandas()
        added["domains"] = self.domains.extend(dom[C.DOMAIN])
        for f in self.domain_features:
            added[f"feature:{f}"] = self.feature_vocabs[f].extend(dom[C.domain_feature_col(f)])
        for d, t in (tasks or {}).items():
            if t not in C.TASKS:
                raise ValueError(f"domain {d!r} has task {t!r}, expected one of {C.TASKS}")
            self.domain_tasks[d] = t
        return added

    # ---- tensors -----------------------------------------------------------------------------
    def pad_sequences(self, tbl: pa.Table, field_: str, vocab: IntVocab) -> np.ndarray:
        """(B, NB, L) left-padded int32 index array of one sequence field for every behaviour."""
        n, L = tbl.num_rows, self.max_len
        out = np.zeros((n, len(self.behaviors), L), dtype=np.int32)  # int32: half the memory
        for bi, b in enumerate(self.behaviors):
            name = C.seq_col(b, field_)
            arr = _list_column(tbl, name)
            lens = pc.fill_null(pc.list_value_length(arr), 0).to_numpy().astype(np.int64)
            if len(lens) and lens.max() > L:
                bad = int(np.argmax(lens > L))
                raise ValueError(f"{name}: row {bad} holds {int(lens[bad])} elements, more than max_len={L}")
            vals = arr.flatten().fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            rows = np.repeat(np.arange(n), lens)
            starts = np.cumsum(lens) - lens
            within = np.arange(len(vals)) - np.repeat(starts, lens)
            out[rows, bi, L - lens[rows] + within] = vocab.lookup(vals)  # left-pad: newest at L-1
        return out

    def _item_arrays(self, tbl: pa.Table) -> dict[str, np.ndarray]:
        """item, category, brand, shop indices of a table with the item id and side-info columns."""
        side = {C.CATEGORY_ID: self.categories, C.BRAND_ID: self.brands, C.SHOP_ID: self.shops}
        return {
            "item": self.items.lookup(tbl.column(C.ITEM_ID).to_numpy()),
            **{SIDE_KEYS[c]: v.lookup(pc.fill_null(tbl.column(c), -1).to_numpy()) for c, v in side.items()},
        }

    def tensorize_items(self, tbl: pa.Table) -> dict[str, torch.Tensor]:
        """Candidate items (id + side-info columns) -> the batch dict's item keys (serving's split path)."""
        missing = [c for c in (C.ITEM_ID, *C.SIDE_INFO) if c not in tbl.column_names]
        if missing:
            raise ValueError(f"item table is missing column(s) {missing}")
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self._item_arrays(tbl).items()}

    def domain_batch(self, domain: str, features: dict[str, str | None]) -> dict[str, np.ndarray]:
        """One row of a domain's keys (domain, domain_feats, task) from its domain-view values."""
        if domain not in self.domain_tasks:
            raise ValueError(f"domain {domain!r} has no task in the feature spec")
        feats = [self.feature_vocabs[f].lookup([features.get(C.domain_feature_col(f))])
                 for f in self.domain_features]
        return {
            "domain": self.domains.lookup([domain]),
            "domain_feats": np.stack(feats, axis=1) if feats else np.zeros((1, 0), np.int64),
            "task": np.array([TASK_INDEX[self.domain_tasks[domain]]], dtype=np.int64),
        }

    def tensorize_users(
        self, blobs: list[bytes | None], domain: dict[str, np.ndarray]
    ) -> dict[str, torch.Tensor]:
        """The user half's keys (seq_*, domain, domain_feats, task) of U users straight from their
        packed-view blobs (features.packed), for one domain_batch: serving's read, no frame.
        Equals tensorize's keys for the same users and domain (tests/model/test_split_scoring.py)."""
        from features.packed import unpack_padded

        fields = list(SEQ_KEYS)
        raw, mask = unpack_padded(blobs, self.behaviors, fields, self.max_len)
        vocabs = {C.ITEM_ID: self.items, C.CATEGORY_ID: self.categories, C.BRAND_ID: self.brands,
                  C.SHOP_ID: self.shops, C.VALUE: self.values}
        out: dict[str, torch.Tensor] = {}
        for i, f in enumerate(fields):
            idx = np.zeros(mask.shape, dtype=np.int32)
            idx[mask] = vocabs[f].lookup(raw[i][mask])
            out[SEQ_KEYS[f]] = torch.from_numpy(idx)
        u = len(blobs)
        for key, row in domain.items():
            out[key] = torch.from_numpy(np.ascontiguousarray(np.repeat(row, u, axis=0)))
        return out

    def tensorize(self, df: pd.DataFrame | pa.Table) -> dict[str, torch.Tensor]:
        """A training-table frame -> the batch dict documented in the module docstring."""
        tbl = _as_table(df)
        self._check_columns(tbl, self.behaviors, self.domain_features, need_label=False)
        dom = tbl.select([C.DOMAIN, *[C.domain_feature_col(f) for f in self.domain_features]]).to_pandas()
        unknown_dom = sorted(set(dom[C.DOMAIN].astype(str)) - set(self.domain_tasks))
        if unknown_dom:
            raise ValueError(f"domain(s) {unknown_dom} have no task in the feature spec")
        task = dom[C.DOMAIN].astype(str).map({d: TASK_INDEX[t] for d, t in self.domain_tasks.items()})
        seq_side = {C.CATEGORY_ID: self.categories, C.BRAND_ID: self.brands, C.SHOP_ID: self.shops,
                    C.VALUE: self.values}
        feats = [self.feature_vocabs[f].lookup(dom[C.domain_feature_col(f)]) for f in self.domain_features]
        batch = {
            "user": self.users.lookup(tbl.column(C.USER_ID).to_numpy()),
            **self._item_arrays(tbl),
            "domain": self.domains.lookup(dom[C.DOMAIN]),
            "domain_feats": (np.stack(feats, axis=1) if feats else np.zeros((tbl.num_rows, 0), np.int64)),
            "task": task.to_numpy(np.int64),
            "seq_item": self.pad_sequences(tbl, C.ITEM_ID, self.items),
            **{SEQ_KEYS[c]: self.pad_sequences(tbl, c, v) for c, v in seq_side.items()},
        }
        out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
        if C.LABEL in tbl.column_names:
            label = tbl.column(C.LABEL).to_numpy(zero_copy_only=False).astype(np.float32)
            if np.isnan(label).any():
                raise ValueError(f"column {C.LABEL!r} has {int(np.isnan(label).sum())} null/NaN values")
            out["label"] = torch.from_numpy(label)
        if C.IS_COLD in tbl.column_names:
            cold = tbl.column(C.IS_COLD).to_numpy(zero_copy_only=False).astype(bool)
            out["is_cold"] = torch.from_numpy(cold)
        return out

    # ---- (de)serialisation: only tensors / str / int / list / dict (weights_only checkpoints) ---
    def to_state(self) -> dict:
        """A weights_only-safe dict holding the whole spec."""
        return {
            "behaviors": list(self.behaviors),
            "max_len": int(self.max_len),
            "domain_features": list(self.domain_features),
            "domain_tasks": dict(self.domain_tasks),
            "users": torch.from_numpy(self.users.ids.copy()),
            "items": torch.from_numpy(self.items.ids.copy()),
            "categories": torch.from_numpy(self.categories.ids.copy()),
            "brands": torch.from_numpy(self.brands.ids.copy()),
            "shops": torch.from_numpy(self.shops.ids.copy()),
            "values": torch.from_numpy(self.values.ids.copy()),
            "domains": list(self.domains.values),
            "feature_vocabs": {f: list(v.values) for f, v in self.feature_vocabs.items()},
        }

    @classmethod
    def from_state(cls, state: dict) -> FeatureSpec:
        """Inverse of to_state."""
        return cls(
            behaviors=list(state["behaviors"]),
            max_len=int(state["max_len"]),
            domain_features=list(state["domain_features"]),
            domain_tasks=dict(state["domain_tasks"]),
            users=IntVocab(state["users"].numpy()),
            items=IntVocab(state["items"].numpy()),
            categories=IntVocab(state["categories"].numpy()),
            brands=IntVocab(state["brands"].numpy()),
            shops=IntVocab(state["shops"].numpy()),
            values=IntVocab(state["values"].numpy()),
            domains=StrVocab(list(state["domains"])),
            feature_vocabs={f: StrVocab(list(v)) for f, v in state["feature_vocabs"].items()},
        )

    def vocab_sizes(self) -> dict[str, int]:
        """Embedding-table sizes (incl. pad and unknown rows) keyed like the batch dict."""
        return {
            "user": len(self.users),
            "item": len(self.items),
            "category": len(self.categories),
            "brand": len(self.brands),
            "shop": len(self.shops),
            "value": len(self.values),
            "domain": len(self.domains),
        }
