"""The one reader of landing files: links refused, CSV read as text, one timestamp parser.

`read_raw` reads a file as stored (check-logs, the dataset builder and validate all start here);
`parse_timestamps` is the only ISO-8601 parser (naive values are UTC); `read_landing_file` is
validate's lenient reader, flagging unparsable values per row. Errors name the file and the
problem and never quote the file's content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features import contract as C
from features import suites

_INT_TEXT = r"^\s*[+-]?\d{1,18}\s*$"  # int64-safe integers; "1.5" or "abc" are unparsable
_FLOAT_TEXT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_TZ_SUFFIX = r"(Z|z|[+-]\d{2}:?\d{2})$"
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class LandingFileError(C.ContractError):
    """A landing file that fails its whole table: linked, unreadable, empty, wrong columns (no content)."""

    def __init__(self, source: str, detail: str, rule: str = suites.FILE_READABLE) -> None:
        """Keep the parts: validation reports `rule` as the failed table-level expectation."""
        self.source, self.detail, self.rule = source, detail, rule
        super().__init__(f"{source}: {detail}")


def parse_timestamps(text: pa.ChunkedArray | pa.Array) -> tuple[pa.ChunkedArray, np.ndarray]:
    """ISO-8601 text to UTC timestamps, the one parser of landing files; returns (times, unparsable).

    A value with a zone suffix (Z, +hh:mm, -hhmm) is converted by its own offset; a value without
    one is UTC. The two kinds are parsed apart: pandas given both at once applies the previous
    row's offset to a naive value. Unparsable values become null and are flagged.
    """
    text = pa.chunked_array([text]) if isinstance(text, pa.Array) else text
    has_tz = pc.fill_null(pc.match_substring_regex(text, _TZ_SUFFIX), False)
    parsed = []
    for mask in (has_tz, pc.invert(has_tz)):
        part = pc.if_else(mask, text, pa.scalar(None, pa.string())).to_pandas()
        times = pd.to_datetime(part, utc=True, errors="coerce", format="ISO8601")
        parsed.append(pa.array(times, type=C.TIMESTAMP, from_pandas=True))
    out = pa.chunked_array([pc.coalesce(*parsed)])
    valid = np.asarray(text.is_valid().to_numpy(zero_copy_only=False), bool)
    return out, valid & ~np.asarray(out.is_valid().to_numpy(zero_copy_only=False), bool)


def safe_names(names: list[str]) -> str:
    """Column names for a message: identifiers as they are, others only counted (never file content)."""
    shown = [n for n in names if _SAFE_NAME.match(n)]
    hidden = len(names) - len(shown)
    return f"{shown}" + (f" and {hidden} name(s) that are not identifiers" if hidden else "")


def _describe(exc: BaseException) -> str:
    """An Arrow read error without the file content it may quote (a CSV row, a bad value)."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    m = re.match(r"(CSV parse error: Expected \d+ columns?, got \d+)", first)
    if m:
        return m.group(1)
    if "CSV conversion error" in first or "invalid value" in first:
        return "a value could not be converted (CSV conversion error)"
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", first)[:200]


def refuse_links(path: Path, root: Path | str | None) -> None:
    """LandingFileError if `path`, or a folder between `root` and it, is a symbolic link."""
    here = Path(path)
    stop = Path(root) if root is not None else here.parent
    while True:
        if here.is_symlink():
            what = "the file" if here == Path(path) else f"its folder {here}"
            raise LandingFileError(
                str(path), f"{what} is a symbolic link; landing files must be regular files (not read)"
            )
        if here == stop or here.parent == here:
            return
        here = here.parent


def read_raw(path: Path, table: str, root: Path | str | None = None, follow_links: bool = False) -> pa.Table:
    """One landing file as stored: CSV with every contract column as text, parquet as typed.

    The one reader of landing files (check-logs, validate, the dataset builder). Symbolic links are
    refused unless `follow_links` (a zone this project staged itself); errors never quote content.
    """
    path = Path(path)
    if not follow_links:
        refuse_links(path, root)
    try:
        if path.suffix.lower() == ".csv":
            # contract columns are read as text: each reader parses them (strictly or row by row)
            types = dict.fromkeys(C.columns(table), pa.string())
            opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
            return pacsv.read_csv(path, convert_options=opts)
        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        detail = f"unreadable {table} file (corrupt or truncated?): {_describe(exc)}"
        raise LandingFileError(str(path), detail) from None


def refuse_linked_folders(base: Path) -> None:
    """LandingFileError for a linked folder under `base`: a directory walk skips it without a word."""
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*")):
        hidden = any(n.startswith((".", "_")) for n in path.relative_to(base).parts)
        if not hidden and path.is_symlink() and path.is_dir():
            raise LandingFileError(
                str(path), "is a symbolic link to a folder; landing folders must be real folders (not read)"
            )


@dataclass
class Batch:
    """A contract-typed table plus, per column, which rows held an unparsable raw value."""

    table: pa.Table
    unparsable: dict[str, np.ndarray]
    warnings: list[str] = field(default_factory=list)


def parse_text(col: pa.ChunkedArray, typ: pa.DataType) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Parse CSV text to `typ`; unparsable values become null and are flagged (vectorised)."""
    if pa.types.is_string(typ):
        return col, np.zeros(len(col), bool)
    if pa.types.is_timestamp(typ):
        return parse_timestamps(col)  # the one timestamp parser (naive = UTC)
    pattern = _INT_TEXT if pa.types.is_integer(typ) else _FLOAT_TEXT
    ok = pc.fill_null(pc.match_substring_regex(col, pattern), False)
    out = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, col, pa.scalar(None, pa.string()))), typ)
    bad = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool) & ~np.asarray(
        out.is_valid().to_numpy(zero_copy_only=False), bool
    )
    return out, bad


def check_columns(names: list[str], table: str, source: str) -> None:
    """Missing columns (and, except for domains' feature columns, extra ones) fail the table."""
    expected = C.columns(table)
    missing = [c for c in expected if c not in names]
    extra = [] if table == C.DOMAINS else [c for c in names if c not in expected]
    if missing or extra:
        raise LandingFileError(
            source,
            "; ".join(f"{what} column(s) {safe_names(cols)}"
                      for what, cols in (("missing", missing), ("unexpected", extra)) if cols),
            suites.COLUMNS_MATCH_CONTRACT,
        )


def read_landing_file(path: Path, table: str, root: Path, follow_links: bool = False) -> Batch:
    """One landing file as a contract-typed batch, bad values flagged per row (validate's reader).

    LandingFileError (with the rule it breaks) for what fails the whole table: an empty,
    unreadable or linked file, missing or unexpected columns, a column type with no text form.
    """
    source = str(path)
    is_csv = path.suffix.lower() == ".csv"
    if path.lstat().st_size == 0:  # lstat: a link is judged (and refused) by read_raw
        raise LandingFileError(source, "the file is empty (0 bytes)", suites.FILE_NOT_EMPTY)
    # CSV: every column as text, parsed below, so one bad cell quarantines one row
    raw = read_raw(path, table, root, follow_links)
    check_columns(raw.column_names, table, source)
    if raw.num_rows == 0:
        raise LandingFileError(source, "the file has no rows", suites.FILE_NOT_EMPTY)
    arrays, fields, unparsable, warnings = [], [], {}, []
    for f in C.SCHEMAS[table]:
        col = raw.column(f.name)
        if is_csv:
            col, bad = parse_text(col, f.type)
            if bad.any():
                unparsable[f.name] = bad
        else:
            raw_type = col.type
            col, bad = cast_typed(col, f.type, table, source, f.name)
            if bad is not None:
                warnings.append(
                    f"{source}: column {f.name} has type {raw_type}, expected {f.type}; "
                    f"parsed value by value, {int(bad.sum())} unparsable row(s) quarantined"
                )
                if bad.any():
                    unparsable[f.name] = bad
        arrays.append(col)
        fields.append(pa.field(f.name, f.type, nullable=True))
    if table == C.DOMAINS:  # the extra columns are the domain features: kept, as strings
        for name in C.domain_feature_columns(raw.column_names):
            arrays.append(raw.column(name).cast(pa.string()))
            fields.append(pa.field(name, pa.string()))
    return Batch(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), unparsable, warnings)


def cast_typed(
    col: pa.ChunkedArray, typ: pa.DataType, table: str, source: str, name: str
) -> tuple[pa.ChunkedArray, np.ndarray | None]:
    """A parquet column as `typ`: losslessly cast, else parsed value by value like CSV text.

    Returns the column and, when it had to be parsed, which rows were unparsable (so that one
    bad value quarantines its row, as in CSV, instead of failing the day). A type that has no
    text form (lists, structs) fails the table.
    """
    is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
    if not is_text or pa.types.is_string(typ):
        try:
            if pa.types.is_timestamp(typ) and pa.types.is_timestamp(col.type) and col.type.tz is None:
                col = pc.assume_timezone(col, "UTC")  # naive timestamps are UTC by contract
            return col.cast(typ, safe=True), None  # lossless only (int32 -> int64 is fine, 1.5 is not)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    # text where a number or time belongs, or values a lossless cast refuses: CSV's rules apply
    try:
        text = col.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise LandingFileError(
            source, f"column {name} has type {col.type}, expected {typ}", suites.COLUMN_TYPES_MATCH_CONTRACT
        ) from exc
    return parse_text(text, typ)
