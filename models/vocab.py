"""Vocabularies: raw ids or strings -> embedding-table indices (0 = padding, 1 = unknown, real from 2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PAD, UNK, FIRST = 0, 1, 2


@dataclass
class IntVocab:
    """Raw int64 ids -> indices (0 pad, 1 unknown, ids[i] -> i + 2); lookup by searchsorted."""

    ids: np.ndarray  # raw ids in index order (sorted at fit; extend appends, so keep an argsort)
    _order: np.ndarray = field(init=False, repr=False)
    _sorted: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Validate and precompute the sorted view used by lookup."""
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]
        if len(self._sorted) > 1 and (np.diff(self._sorted) == 0).any():
            raise ValueError("vocabulary ids must be unique")

    @classmethod
    def fit(cls, values: np.ndarray) -> IntVocab:
        """Vocabulary of the distinct non-negative ids in `values` (negative ids mean unknown)."""
        v = np.asarray(values, dtype=np.int64)
        return cls(np.unique(v[v >= 0]))

    def __len__(self) -> int:
        """Table size including the padding and unknown rows."""
        return len(self.ids) + FIRST

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Indices of raw ids (vectorised); unseen or negative ids -> UNK."""
        v = np.asarray(values, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.full(v.shape, UNK, dtype=np.int64)
        pos = np.searchsorted(self._sorted, v)
        pos_c = np.minimum(pos, len(self._sorted) - 1)
        hit = (self._sorted[pos_c] == v) & (v >= 0)
        return np.where(hit, self._order[pos_c] + FIRST, UNK).astype(np.int64)

    def extend(self, values: np.ndarray) -> int:
        """Append ids not yet known (existing indices unchanged); returns how many were added."""
        v = np.asarray(values, dtype=np.int64)
        new = np.unique(v[v >= 0])
        new = new[self.lookup(new) == UNK]
        if len(new):
            self.ids = np.concatenate([self.ids, new])
            self.__post_init__()
        return int(len(new))


@dataclass
class StrVocab:
    """String values -> indices (0 pad, 1 unknown, values[i] -> i + 2)."""

    values: list[str]

    def __post_init__(self) -> None:
        """Build the pandas index used by the vectorised lookup."""
        self._index = pd.Index(self.values, dtype=object)
        if not self._index.is_unique:
            raise ValueError("vocabulary values must be unique")

    @classmethod
    def fit(cls, values: pd.Series) -> StrVocab:
        """Vocabulary of the distinct non-null strings, sorted."""
        return cls(sorted(pd.Series(values).dropna().astype(str).unique().tolist()))

    def __len__(self) -> int:
        """Table size including the padding and unknown rows."""
        return len(self.values) + FIRST

    def lookup(self, values: pd.Series | np.ndarray | list[str]) -> np.ndarray:
        """Indices of strings (vectorised); unseen or null -> UNK."""
        pos = self._index.get_indexer(pd.Index(pd.Series(values, dtype=object)))
        return np.where(pos >= 0, pos + FIRST, UNK).astype(np.int64)

    def extend(self, values: pd.Series) -> int:
        """Append values not yet known (existing indices unchanged); returns how many were added."""
        known = set(self.values)
        new = [v for v in StrVocab.fit(values).values if v not in known]
        if new:
            self.values = [*self.values, *new]
            self.__post_init__()
        return len(new)
