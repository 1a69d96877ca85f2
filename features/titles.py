"""Side information from product titles: hashed-token TF-IDF, a seeded low-rank projection, and k-means
pseudo-categories that feed the contract's `category_id` (real catalogs have titles, not category trees).

Everything is numpy/scipy and seeded; nothing is fetched from a model hub.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from scipy import sparse

HASH_BUCKETS = 1 << 18  # token hash space: collisions are rare at a few 10k distinct tokens
MIN_DF = 2  # tokens in fewer titles carry no shared signal between items


class TitleError(ValueError):
    """A titles file that cannot be used; the message names it."""


def read_titles(path: Path | str) -> pa.Table:
    """(item, title) strings from a tab-separated file with a header (first two columns)."""
    path = Path(path)
    if not path.is_file():
        raise TitleError(f"{path}: no such titles file")
    try:
        tbl = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
                             convert_options=pacsv.ConvertOptions(column_types={}, strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        raise TitleError(f"{path}: not a tab-separated item<TAB>title file: {exc}") from None
    if tbl.num_columns < 2:
        raise TitleError(f"{path}: needs two columns, item and title")
    return pa.table({"item": pc.cast(tbl.column(0), pa.string()),
                     "title": pc.cast(tbl.column(1), pa.string())})


def tfidf(titles: pa.Array | pa.ChunkedArray) -> sparse.csr_matrix:
    """(n, HASH_BUCKETS) L2-normalised TF-IDF of lower-cased alphanumeric tokens (hashed, seed-free)."""
    lists = pc.split_pattern_regex(pc.utf8_lower(pc.fill_null(titles, "")), r"[^a-z0-9]+")
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    doc = pc.list_parent_indices(lists).to_numpy()
    tok = pc.list_flatten(lists)
    keep = pc.greater(pc.utf8_length(tok), 1).to_numpy(zero_copy_only=False)  # drop "" and 1-char tokens
    words = np.asarray(tok.to_numpy(zero_copy_only=False), dtype=object)[keep]
    col = pd.util.hash_array(words) % HASH_BUCKETS
    doc = doc[keep]
    n = len(lists)
    tf = sparse.csr_matrix((np.ones(len(doc)), (doc, col.astype(np.int64))), shape=(n, HASH_BUCKETS))
    tf.sum_duplicates()
    df = np.bincount(tf.indices, minlength=HASH_BUCKETS)
    idf = np.where(df >= MIN_DF, np.log((1 + n) / (1 + df)) + 1.0, 0.0)
    x = tf.multiply(idf[None, :]).tocsr()
    norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sparse.diags(1.0 / np.maximum(norm, 1e-12)) @ x


def project(x: sparse.csr_matrix, dim: int, seed: int) -> np.ndarray:
    """(n, dim) randomized truncated SVD of x (seeded), rows L2-normalised: the title embedding."""
    rng = np.random.default_rng(seed)
    k = min(dim + 10, min(x.shape))
    q, _ = np.linalg.qr(x @ rng.standard_normal((x.shape[1], k)))
    for _ in range(2):  # power iterations sharpen the top of the spectrum
        q, _ = np.linalg.qr(x @ (x.T @ q))
    u, s, _ = np.linalg.svd(np.asarray(x.T @ q).T, full_matrices=False)
    emb = (q @ u)[:, :dim] * s[:dim]
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 20) -> np.ndarray:
    """(n,) cluster of each row (0..k-1), Lloyd's algorithm from k seeded distinct rows."""
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centres = x[rng.choice(len(x), k, replace=False)].copy()
    assign = np.zeros(len(x), np.int64)
    for _ in range(iters):
        d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
        new = d.argmin(1)
        if np.array_equal(new, assign) and _ > 0:
            break
        assign = new
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=k)[:, None]
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    return assign


def pseudo_categories(titles: pa.Table, n_categories: int, dim: int = 48, seed: int = 0) -> pa.Table:
    """(item, category_id) with category_id in 1..n_categories: k-means over projected title TF-IDF.

    Items whose titles have no shared token (all-zero TF-IDF) get no category (they are left out).
    """
    if n_categories < 2:
        raise TitleError(f"--title-categories must be >= 2, got {n_categories}")
    x = tfidf(titles.column("title"))
    has = np.asarray(x.getnnz(axis=1)) > 0
    if has.sum() < n_categories:
        raise TitleError(f"only {int(has.sum())} titles share a token; too few for {n_categories} categories")
    emb = project(x[has], dim, seed)
    cats = kmeans(emb, n_categories, seed) + 1
    return pa.table({"item": titles.column("item").filter(pa.array(has)), "category_id": pa.array(cats)})
