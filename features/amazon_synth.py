"""Synthetic Amazon-like rating files (2014 / 2018 CSV, 5-core JSON lines) for tests and experiments.

No real Amazon data can be shipped, so tests and the cold-start experiment generate look-alike files:
reviewer ids ('A' + 13 upper-case alphanumerics), ASINs ('B0' + 8 chars), 1-5 star ratings and unix
timestamps. Ratings share a latent user taste across the two categories, so transfer can help.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.amazon_formats import FORMAT_5CORE, FORMAT_2014, FORMAT_2018, file_name, parse_format

_ALPHABET = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_T0 = 1_356_998_400  # 2013-01-01 UTC
_SPAN_DAYS = 60


def _ids(rng: np.random.Generator, prefix: str, width: int, n: int) -> np.ndarray:
    """n distinct ids: prefix + `width` base-36 chars (random high digits, index in the low ones)."""
    low = 5  # 36**5 > 60M distinct indices
    idx = np.arange(n)
    digits = np.empty((n, width), dtype=np.int64)
    digits[:, : width - low] = rng.integers(0, 36, (n, width - low))
    for k in range(low):
        digits[:, width - 1 - k] = (idx // 36**k) % 36
    chars = _ALPHABET[digits].astype("U1")
    return np.char.add(prefix, chars.view(f"U{width}").ravel())


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ratings (user, item, rating, ts) in one of the Amazon formats."""
    if fmt == FORMAT_2014:
        frame[["user", "item", "rating", "ts"]].to_csv(path, header=False, index=False)
    elif fmt == FORMAT_2018:
        frame[["item", "user", "rating", "ts"]].to_csv(path, header=False, index=False)
    else:
        js = pd.DataFrame(
            {
                "reviewerID": frame["user"],
                "asin": frame["item"],
                "overall": frame["rating"],
                "unixReviewTime": frame["ts"] // 86_400 * 86_400,  # 5-core times are day-resolution
                "summary": "synthetic review",
            }
        )
        js.to_json(path, orient="records", lines=True, compression={"method": "gzip", "mtime": 0})


def make_amazon_files(
    out_dir: Path | str,
    seed: int,
    n_users: int = 400,
    n_items: int = 300,
    fmt: str = FORMAT_5CORE,
    ratings_per_user: float = 8.0,
    overlap: float = 0.6,
    source_name: str = "Books",
    target_name: str = "Movies_and_TV",
) -> tuple[Path, Path]:
    """Write (source, target) files; `overlap` of the target's users also rate in the source.

    Each category has `n_items` items; the source has all `n_users` users, the target a subset of
    them (overlap) plus its own users. Deterministic per seed (gzip mtime fixed).
    """
    fmt = parse_format(fmt)
    if not 0.0 < overlap <= 1.0:
        raise ValueError(f"overlap must be in (0, 1], got {overlap}")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_only = int(round(n_users * 0.5 * (1 - overlap) / overlap))
    users = _ids(rng, "A", 13, n_users + n_only)
    taste = rng.normal(0, 1, (n_users + n_only, 4))
    user_bias = rng.normal(0, 0.4, n_users + n_only)
    shared = rng.choice(n_users, n_users // 2, replace=False)
    all_items = _ids(rng, "B0", 8, 2 * n_items)  # one call: the two categories never share an ASIN
    paths = []
    for k, (name, members) in enumerate(
        (
            (source_name, np.arange(n_users)),
            (target_name, np.concatenate([shared, n_users + np.arange(n_only)])),
        )
    ):
        items = all_items[k * n_items : (k + 1) * n_items]
        item_vec = rng.normal(0, 1, (n_items, 4))
        item_bias = rng.normal(0, 0.5, n_items)
        pop = rng.pareto(1.5, n_items) + 1
        counts = np.maximum(rng.poisson(ratings_per_user, len(members)), 1)
        u = np.repeat(members, counts)
        i = np.searchsorted(np.cumsum(pop), rng.random(len(u)) * pop.sum()).clip(0, n_items - 1)
        score = 3.6 + 0.5 * (taste[u] * item_vec[i]).sum(axis=1) + user_bias[u] + item_bias[i]
        rating = np.clip(np.round(score + rng.normal(0, 0.5, len(u))), 1, 5)
        ts = _T0 + rng.integers(0, _SPAN_DAYS * 86_400, len(u))
        frame = pd.DataFrame({"user": users[u], "item": items[i], "rating": rating, "ts": ts})
        path = out_dir / file_name(fmt, name)
        _write(frame, path, fmt)
        paths.append(path)
    return paths[0], paths[1]
