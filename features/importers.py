"""Import public Amazon review data (2014 / 2018 ratings CSV, 5-core JSON lines) into the log contract.

The source category becomes `behaviors` (behavior=rate, value=rating), the target category becomes
`impressions` with the rating as label (task `rating`); string ids map to dense int64 ids shared by both
files (saved under `<out>/_mappings/`), duplicated (user, item) rows keep the latest, and every event
table is partitioned by the day of its timestamp. Everything is written atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.json as pajson

from features import contract as C
from features.amazon_formats import FORMAT_5CORE, FORMAT_2014, FORMAT_2018, FORMAT_CHOICES, parse_format
from features.io import LANDING_OUTPUT, atomic_dir, write_table

MAPPINGS_DIR = "_mappings"
RAW_ID = "raw_id"  # mapping files: raw_id (string) -> user_id / item_id (int64)
DOMAIN_FEATURE = "category"  # the one domain feature of Amazon domains: the category name
SAMPLE_ROWS = 2_000  # rows used to detect the CSV column order
_USER_RE = r"^A[A-Z0-9]{9,20}$"  # reviewer ids: "A" + ~13 upper-case alphanumerics
_ASIN_RE = r"^[0-9B][A-Z0-9]{9}$"  # ASINs: 10 chars, ISBN-10 digits or "B..."
_JSON_FIELDS = pa.schema(
    [
        ("reviewerID", pa.string()),
        ("asin", pa.string()),
        ("overall", pa.float64()),
        ("unixReviewTime", pa.int64()),
    ]
)
_USER, _ITEM, _RATING, _TS = "user", "item", "rating", "ts"


class AmazonImportError(C.ContractError):
    """An input file that cannot be imported; the message names the file and the problem."""


@dataclass
class ImportSummary:
    """What import_amazon() wrote."""

    out: Path
    source_domain: str
    target_domain: str
    source_format: str
    target_format: str
    rows: dict[str, int]  # per contract table
    users: int
    overlap_users: int  # users present in both files
    duplicates_dropped: int
    days: int  # distinct days over both event tables


def domain_name_from_file(path: Path | str) -> str:
    """A valid domain name from an Amazon file name: 'ratings_Movies_and_TV.csv' -> 'movies_and_tv'."""
    name = Path(path).name.lower()
    name = re.sub(r"(\.(gz|csv|json|jsonl))+$", "", name)
    name = re.sub(r"^(ratings|reviews|meta)_", "", name)
    name = re.sub(r"_5$", "", name)  # 5-core files: Books_5.json
    name = re.sub(r"[^a-z0-9]+", "_", name).strip("_")
    if not name:
        raise AmazonImportError(f"{path}: cannot derive a domain name from the file name")
    if not name[0].isalpha():
        name = f"d_{name}"
    return C.check_domain_name(name[:63].rstrip("_"))


def _first_char(path: Path) -> str:
    """The first non-blank character of a (possibly gzipped) file; '' when empty."""
    with pa.input_stream(str(path), compression="detect") as f:
        head = f.read(4096)
    try:
        text = head.decode("utf-8", errors="strict").lstrip()
    except UnicodeDecodeError:
        text = head[:4000].decode("utf-8", errors="replace").lstrip()
    return text[:1]


def _csv_order(sample: pa.Table, path: Path) -> str:
    """Decide 2014 (user,item) vs 2018 (item,user) from a sample; fail clearly when ambiguous."""
    c0, c1 = sample.column(0), sample.column(1)
    n = max(sample.num_rows, 1)

    def share(col: pa.ChunkedArray, pattern: str) -> np.ndarray:
        """Boolean mask of values matching an id pattern."""
        return pc.fill_null(pc.match_substring_regex(col, pattern), False).to_numpy(zero_copy_only=False)

    ui = (share(c0, _USER_RE) & share(c1, _ASIN_RE)).sum() / n
    iu = (share(c0, _ASIN_RE) & share(c1, _USER_RE)).sum() / n
    if ui >= 0.9 and iu <= 0.1:
        return FORMAT_2014
    if iu >= 0.9 and ui <= 0.1:
        return FORMAT_2018
    raise AmazonImportError(
        f"{path}: cannot tell the CSV column order from {sample.num_rows} sample rows: {ui:.0%} look like "
        f"user,item (2014 ratings) and {iu:.0%} like item,user (2018 ratings); expected Amazon reviewer ids "
        f"('A' + ~13 chars) and ASINs (10 chars starting with a digit or 'B'); give the format with "
        f"--format: {FORMAT_CHOICES}"
    )


def detect_format(path: Path | str) -> str:
    """The Amazon format of a file: FORMAT_2014, FORMAT_2018 or FORMAT_5CORE; AmazonImportError if unknown."""
    path = Path(path)
    if not path.is_file():
        raise AmazonImportError(f"{path}: no such file")
    try:
        first = _first_char(path)
    except OSError as exc:
        raise AmazonImportError(f"{path}: unreadable file: {exc}") from exc
    if first == "":
        raise AmazonImportError(f"{path}: empty file")
    if first == "{":
        return FORMAT_5CORE
    sample = _read_csv(path, SAMPLE_ROWS)
    return _csv_order(sample, path)


def _given_format(fmt: str) -> str:
    """A user-given format name or alias as one of FORMATS; AmazonImportError naming the choices."""
    try:
        return parse_format(fmt)
    except ValueError as exc:
        raise AmazonImportError(str(exc)) from exc


def _read_csv(path: Path, max_rows: int | None = None) -> pa.Table:
    """A headerless 4-column ratings CSV as strings (max_rows: only the first rows, for detection)."""
    names = ["c0", "c1", "c2", "c3"]
    read = pacsv.ReadOptions(column_names=names, block_size=1 << 22)
    conv = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    try:
        with pa.input_stream(str(path), compression="detect") as f:
            reader = pacsv.open_csv(f, read_options=read, convert_options=conv)
            batches, rows = [], 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if max_rows is not None and rows >= max_rows:
                    break
            tbl = pa.Table.from_batches(batches, schema=reader.schema)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise AmazonImportError(
            f"{path}: not a 4-column ratings CSV (user/item, item/user, rating, timestamp): {exc}"
        ) from exc
    return tbl.slice(0, max_rows) if max_rows is not None else tbl


def _to_number(col: pa.ChunkedArray, typ: pa.DataType, path: Path, what: str) -> pa.ChunkedArray:
    """Cast a text column to a number; AmazonImportError naming the file and column otherwise."""
    try:
        return pc.cast(pc.utf8_trim_whitespace(col), typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise AmazonImportError(f"{path}: {what} column is not {typ}: {exc}") from exc


def read_amazon(path: Path | str, fmt: str | None = None) -> tuple[pa.Table, str]:
    """One Amazon file as (user, item, rating, ts seconds) plus its format (`fmt` overrides detection)."""
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    else:
        fmt = _given_format(fmt)
        if not path.is_file():
            raise AmazonImportError(f"{path}: no such file")
    if fmt == FORMAT_5CORE:
        opts = pajson.ParseOptions(explicit_schema=_JSON_FIELDS, unexpected_field_behavior="ignore")
        try:
            with pa.input_stream(str(path), compression="detect") as f:
                raw = pajson.read_json(f, parse_options=opts)
        except (pa.ArrowInvalid, OSError) as exc:
            raise AmazonImportError(
                f"{path}: unreadable 5-core JSON lines ({list(_JSON_FIELDS.names)}): {exc}"
            ) from exc
        for name in _JSON_FIELDS.names:
            if raw.column(name).null_count == raw.num_rows:
                raise AmazonImportError(f"{path}: 5-core JSON lines are missing field {name!r}")
        tbl = pa.table(
            {
                _USER: raw.column("reviewerID"),
                _ITEM: raw.column("asin"),
                _RATING: raw.column("overall"),
                _TS: raw.column("unixReviewTime"),
            }
        )
    else:
        raw = _read_csv(path)
        user, item = (
            (raw.column("c0"), raw.column("c1"))
            if fmt == FORMAT_2014
            else (raw.column("c1"), raw.column("c0"))
        )
        tbl = pa.table(
            {
                _USER: user,
                _ITEM: item,
                _RATING: _to_number(raw.column("c2"), pa.float64(), path, "rating (3rd)"),
                _TS: _to_number(raw.column("c3"), pa.int64(), path, "timestamp (4th)"),
            }
        )
    for name in tbl.column_names:
        nulls = tbl.column(name).null_count
        if nulls:
            raise AmazonImportError(f"{path}: {nulls} row(s) have no {name}")
    rating = tbl.column(_RATING)
    bad = pc.or_(pc.less(rating, C.RATING_MIN), pc.greater(rating, C.RATING_MAX))
    n_bad = pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
    if n_bad:
        raise AmazonImportError(f"{path}: {n_bad} rating(s) outside [{C.RATING_MIN}, {C.RATING_MAX}]")
    if tbl.num_rows == 0:
        raise AmazonImportError(f"{path}: no rows")
    return tbl, fmt


def _dense_ids(values: pa.ChunkedArray) -> pa.Table:
    """Mapping raw string id -> dense int64 id (1..n, in sorted raw-id order: deterministic)."""
    uniq = pc.unique(values)
    uniq = uniq.take(pc.sort_indices(uniq))
    return pa.table({RAW_ID: uniq, "id": pa.array(np.arange(1, len(uniq) + 1, dtype=np.int64))})


def _keep_latest(
    tbl: pa.Table, users: np.ndarray, items: np.ndarray
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Drop duplicated (user, item) rows, keeping the latest (ties: the last in file order)."""
    ts = tbl.column(_TS).to_numpy()
    # one int64 key per (user, item); lexsort is stable, so equal timestamps keep file order
    key = users.astype(np.int64) * (int(items.max()) + 1) + items
    order = np.lexsort((ts, key))
    k = key[order]
    last = np.ones(len(order), bool)
    last[:-1] = k[1:] != k[:-1]
    keep = np.sort(order[last])
    return tbl.take(pa.array(keep)), users[keep], items[keep]


def _event_columns(tbl: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(event_time, dt) of rows from their unix-seconds timestamps."""
    seconds = tbl.column(_TS).to_numpy()
    ts = pa.array(seconds * 1_000_000, pa.int64()).cast(C.TIMESTAMP)
    return ts, day_strings(seconds)


def day_strings(seconds: np.ndarray) -> pa.Array:
    """'YYYY-MM-DD' (UTC) of unix-second timestamps; formats each distinct day once (fast)."""
    days, inverse = np.unique(seconds // 86_400, return_inverse=True)
    labels = pa.array(days.astype("datetime64[D]").astype(str))
    return labels.take(pa.array(inverse.ravel()))


def _write_partitioned(tbl: pa.Table, dt: pa.Array, root: Path, table: str) -> None:
    """Write a contract table as <root>/<table>/dt=YYYY-MM-DD/part-0.parquet, rows in time order."""
    order = np.argsort(tbl.column(C.EVENT_TIME).cast(pa.int64()).to_numpy(), kind="stable")
    data = tbl.append_column("dt", dt).take(pa.array(order))
    ds.write_dataset(
        data,
        root / table,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("dt", pa.string())]), flavor="hive"),
        basename_template="part-{i}.parquet",
        max_partitions=1_000_000,
        max_open_files=512,
        use_threads=False,  # deterministic file contents and row order
        preserve_order=True,
    )


def import_amazon(
    source: Path | str, target: Path | str, out: Path | str, fmt: str | None = None
) -> ImportSummary:
    """Convert an Amazon source-category file and target-category file into a landing zone at `out`
    (`fmt`: both files' format, overriding detection; None = detect each file's)."""
    source, target, out = Path(source), Path(target), Path(out)
    if fmt is not None:
        fmt = _given_format(fmt)  # before reading anything: a bad name is a user error, not a bad file
    src_name, tgt_name = domain_name_from_file(source), domain_name_from_file(target)
    if src_name == tgt_name:
        raise AmazonImportError(f"{source} and {target}: both give domain name {src_name!r}; rename one file")
    src, src_fmt = read_amazon(source, fmt)
    tgt, tgt_fmt = read_amazon(target, fmt)
    users_map = _dense_ids(pa.chunked_array(src.column(_USER).chunks + tgt.column(_USER).chunks))
    items_map = _dense_ids(pa.chunked_array(src.column(_ITEM).chunks + tgt.column(_ITEM).chunks))

    def ids(col: pa.ChunkedArray, mapping: pa.Table) -> np.ndarray:
        """Dense ids of raw string ids (vectorised lookup)."""
        pos = pc.index_in(col, value_set=mapping.column(RAW_ID))
        return mapping.column("id").to_numpy()[pos.to_numpy()]

    parts = {}
    dropped = 0
    for name, tbl in (("source", src), ("target", tgt)):
        n0 = tbl.num_rows
        kept, u, i = _keep_latest(tbl, ids(tbl.column(_USER), users_map), ids(tbl.column(_ITEM), items_map))
        dropped += n0 - kept.num_rows
        parts[name] = (kept, u, i)

    kept, u, i = parts["source"]
    ts, dt_b = _event_columns(kept)
    behaviors = pa.table(
        {
            C.EVENT_TIME: ts,
            C.DOMAIN: pa.array(np.full(kept.num_rows, src_name, dtype=object), pa.string()),
            C.USER_ID: pa.array(u),
            C.ITEM_ID: pa.array(i),
            C.BEHAVIOR: pa.array(np.full(kept.num_rows, "rate", dtype=object), pa.string()),
            C.VALUE: kept.column(_RATING),
        },
        schema=C.SCHEMAS[C.BEHAVIORS],
    )
    kept, u, i = parts["target"]
    ts, dt_i = _event_columns(kept)
    u_arr, i_arr = pa.array(u), pa.array(i)
    # one synthetic request per rating: deterministic from (domain, user, item)
    request_id = pc.binary_join_element_wise(
        f"{tgt_name}-", pc.cast(u_arr, pa.string()), "-", pc.cast(i_arr, pa.string()), ""
    )
    impressions = pa.table(
        {
            C.EVENT_TIME: ts,
            C.REQUEST_ID: request_id,
            C.DOMAIN: pa.array(np.full(kept.num_rows, tgt_name, dtype=object), pa.string()),
            C.USER_ID: u_arr,
            C.ITEM_ID: i_arr,
            C.LABEL: kept.column(_RATING),
        },
        schema=C.SCHEMAS[C.IMPRESSIONS],
    )
    n_items = items_map.num_rows
    null_i64 = pa.nulls(n_items, pa.int64())
    items = pa.table(
        {
            C.ITEM_ID: items_map.column("id"),
            C.CATEGORY_ID: null_i64,
            C.BRAND_ID: null_i64,
            C.SHOP_ID: null_i64,
            C.PRICE: pa.nulls(n_items, pa.float64()),
        },
        schema=C.SCHEMAS[C.ITEMS],
    )
    domains = pa.table(
        {
            C.DOMAIN: [src_name, tgt_name],
            C.ROLE: [C.ROLE_SOURCE, C.ROLE_TARGET],
            C.TASK: [C.TASK_RATING, C.TASK_RATING],
            DOMAIN_FEATURE: [src_name, tgt_name],
        }
    )
    with atomic_dir(out, kind=LANDING_OUTPUT) as tmp:
        _write_partitioned(behaviors, dt_b, tmp, C.BEHAVIORS)
        _write_partitioned(impressions, dt_i, tmp, C.IMPRESSIONS)
        write_table(items, tmp / C.ITEMS / "items.parquet")
        write_table(domains, tmp / C.DOMAINS / "domains.parquet")
        write_table(users_map.rename_columns([RAW_ID, C.USER_ID]), tmp / MAPPINGS_DIR / "users.parquet")
        write_table(items_map.rename_columns([RAW_ID, C.ITEM_ID]), tmp / MAPPINGS_DIR / "items.parquet")
    overlap = len(np.intersect1d(np.unique(parts["source"][1]), np.unique(parts["target"][1])))
    n_days = len(pc.unique(pa.concat_arrays([dt_b, dt_i])))
    return ImportSummary(
        out,
        src_name,
        tgt_name,
        src_fmt,
        tgt_fmt,
        {
            C.BEHAVIORS: behaviors.num_rows,
            C.IMPRESSIONS: impressions.num_rows,
            C.ITEMS: n_items,
            C.DOMAINS: 2,
        },
        users_map.num_rows,
        overlap,
        dropped,
        n_days,
    )

