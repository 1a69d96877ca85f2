"""Read C2DSR-format mixed-domain sequence files (Amazon Food-Kitchen, Movie-Book) as a standard table.

Layout of a data folder: `items_x.txt` and `items_y.txt` (original_id<TAB>ASIN<TAB>index, one line per item,
line k has index k), sequence files (`train_new.txt`, `val_new.txt`, `test_new.txt`; any present are read):
one user per line, `user_index<TAB>n<TAB>` then one `item_index|unix_time|YYYY-mm-dd HH:MM:SS|` field per
interaction. An item_index below the line count of items_x is domain X's item; otherwise domain Y's item
`item_index - len(items_x)`. Items come out as their ASINs, users as their user_index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.interactions import DOMAIN, ITEM, POS, RATING, STANDARD, TS, USER, InteractionImportError

SEQUENCE_FILES: tuple[str, ...] = ("train_new.txt", "val_new.txt", "test_new.txt")


def _lines(path: Path) -> pa.Array:
    """Every line of a text file as one string array (no parsing, no quoting)."""
    opts = pacsv.ParseOptions(delimiter="\x01", quote_char=False, escape_char=False)
    read = pacsv.ReadOptions(column_names=["line"])
    return pacsv.read_csv(path, read_options=read, parse_options=opts).column("line").combine_chunks()


def _asins(path: Path) -> pa.Array:
    """Column 2 (ASIN) of an items file, checked to be in index order."""
    if not path.is_file():
        raise InteractionImportError(f"{path}: no such items file")
    parts = pc.split_pattern(_lines(path), "\t")
    if not pc.all(pc.equal(pc.list_value_length(parts), 3)).as_py():
        raise InteractionImportError(f"{path}: every line must be original_id<TAB>ASIN<TAB>index")
    index = pc.cast(pc.list_element(parts, 2), pa.int64()).to_numpy()
    if not np.array_equal(index, np.arange(len(index))):
        raise InteractionImportError(f"{path}: the index column is not 0, 1, 2, ... in line order")
    return pc.list_element(parts, 1)


def read_c2dsr(folder: Path | str, x_domain: str, y_domain: str) -> pa.Table:
    """Every interaction of the folder's sequence files as a standard table (implicit, timed)."""
    folder = Path(folder)
    x_items, y_items = _asins(folder / "items_x.txt"), _asins(folder / "items_y.txt")
    files = [folder / f for f in SEQUENCE_FILES if (folder / f).is_file()]
    if not files:
        raise InteractionImportError(f"{folder}: none of {SEQUENCE_FILES}")
    users, items, stamps = [], [], []
    for path in files:
        fields = pc.split_pattern(_lines(path), "\t")
        user = pc.list_element(fields, 0)
        flat = pc.list_flatten(fields)
        parent = pc.list_parent_indices(fields)
        is_event = pc.match_substring(flat, "|")
        ev = pc.split_pattern(flat.filter(is_event), "|")
        if not pc.all(pc.greater_equal(pc.list_value_length(ev), 2)).as_py():
            raise InteractionImportError(f"{path}: an interaction field is not item|unix_time|...")
        try:
            items.append(pc.cast(pc.list_element(ev, 0), pa.int64()).to_numpy())
            stamps.append(pc.cast(pc.list_element(ev, 1), pa.int64()).to_numpy())
        except pa.ArrowInvalid as exc:
            raise InteractionImportError(f"{path}: non-integer item index or time: {exc}") from None
        users.append(user.take(parent.filter(is_event)))
    item = np.concatenate(items)
    n_x = len(x_items)
    if item.min(initial=0) < 0 or item.max(initial=0) >= n_x + len(y_items):
        raise InteractionImportError(f"{folder}: an item index lies outside items_x + items_y")
    is_x = item < n_x
    asin = np.where(is_x, x_items.to_numpy(zero_copy_only=False)[np.where(is_x, item, 0)],
                    y_items.to_numpy(zero_copy_only=False)[np.where(is_x, 0, item - n_x)])
    n = len(item)
    return pa.table({
        USER: pa.concat_arrays([pc.cast(u, pa.string()).combine_chunks() if isinstance(u, pa.ChunkedArray)
                                else pc.cast(u, pa.string()) for u in users]),
        ITEM: pa.array(asin, pa.string()),
        DOMAIN: pa.array(np.where(is_x, x_domain, y_domain).astype(object), pa.string()),
        RATING: pa.nulls(n, pa.float64()),
        TS: pa.array(np.concatenate(stamps)),
        POS: pa.array(np.arange(n, dtype=np.int64)),
    }, schema=STANDARD)
