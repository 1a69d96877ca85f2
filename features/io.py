"""Read and write contract tables: casting to contract types, clear errors, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import contract as C
from features.landing import parse_timestamps, read_raw, refuse_linked_folders

# the marker file every folder written through `atomic_dir(..., kind=...)` carries: what made it
MARKER = ".dacdr-output.json"
# the kinds of output folder the commands write (recorded in MARKER)
LANDING_OUTPUT, DATASET_OUTPUT, LAKE_OUTPUT = "landing_zone", "dataset", "lake"


class OutputRefused(ValueError):
    """An output folder that holds something this command did not make (`--force` replaces it)."""


def _read_file(path: Path, table: str, root: Path | str | None = None) -> pa.Table:
    """Read one parquet/csv file with its timestamps parsed; ContractError naming the file."""
    tbl = read_raw(path, table, root)
    if path.suffix.lower() != ".csv":
        return tbl
    for f in C.SCHEMAS[table]:
        if pa.types.is_timestamp(f.type) and f.name in tbl.column_names:
            idx = tbl.column_names.index(f.name)
            parsed, bad = parse_timestamps(tbl.column(idx))
            if bad.any():
                raise C.ContractError(
                    f"{path}: column {f.name} holds {int(bad.sum())} value(s) that are not "
                    "ISO-8601 timestamps"
                )
            tbl = tbl.set_column(idx, f.name, parsed)
    return tbl


def conform(tbl: pa.Table, table: str, source: str = "<memory>", keep_extra: bool = False) -> pa.Table:
    """Cast a table to the contract schema; ContractError names `source` and the bad column.

    Missing columns are an error. Extra columns are dropped unless `keep_extra` (the domains
    table always keeps them: they are the domain features, cast to string).
    """
    schema = C.SCHEMAS[table]
    missing = [n for n in schema.names if n not in tbl.column_names]
    if missing:
        raise C.ContractError(f"{source}: {table} is missing column(s) {missing}")
    arrays, fields = [], []
    for f in schema:
        col = tbl.column(f.name)
        try:
            if pa.types.is_timestamp(f.type) and pa.types.is_timestamp(col.type) and col.type.tz is None:
                col = pc.assume_timezone(col, "UTC")  # naive timestamps are UTC by contract
            col = col.cast(f.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise C.ContractError(
                f"{source}: {table}.{f.name} has type {col.type}, expected {f.type}: {exc}"
            ) from exc
        arrays.append(col)
        fields.append(pa.field(f.name, f.type, nullable=f.nullable))
    extra = [n for n in tbl.column_names if n not in schema.names]
    if table == C.DOMAINS or keep_extra:
        for name in extra:
            col = tbl.column(name)
            arrays.append(col.cast(pa.string()) if table == C.DOMAINS else col)
            fields.append(pa.field(name, arrays[-1].type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _hidden(part: C.Partition, root: Path | str) -> bool:
    """A file under a dot/underscore folder or named so: temp and `.old` leftovers of a swap, markers."""
    rel = part.path.relative_to(Path(root) / part.table)
    return any(name.startswith((".", "_")) for name in rel.parts)


def data_partitions(root: Path | str, table: str, dt: str | None = None) -> list[C.Partition]:
    """The files of a table that hold its data: event tables only in `dt=YYYY-MM-DD` folders.

    atomic_dir leaves `.dt=D.<tmp>` and `.dt=D.old.<id>` folders beside the partition when a swap
    is interrupted; they hold a copy of the day, so reading them would double its rows.
    """
    refuse_linked_folders(Path(root) / table)
    parts = [p for p in C.list_partitions(root, table, dt) if not _hidden(p, root)]
    if table in C.EVENT_TABLES:
        parts = [p for p in parts if p.dt is not None]
    return parts


def stray_files(root: Path | str, table: str, dt: str | None = None) -> list[Path]:
    """Files under a table's folder that no reader reads (wrong suffix, outside any dt= folder).

    With `dt`, only those inside that day's folder plus those outside every dt= folder. Hidden
    files (swap leftovers, markers) are not listed: they are expected beside a live partition.
    """
    base = Path(root) / table
    if not base.is_dir():
        return []
    read = {p.path for p in data_partitions(root, table)}
    out = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if not path.is_file() or path in read or any(n.startswith((".", "_")) for n in rel.parts):
            continue
        days = [n.removeprefix("dt=") for n in rel.parts[:-1] if n.startswith("dt=")]
        if dt is None or not days or days[-1] == dt:
            out.append(path)
    return out


def read_table(root: Path | str, table: str, dt: str | None = None, keep_extra: bool = False) -> pa.Table:
    """Read every data file of a contract table (optionally one day) as one contract-typed table."""
    parts = data_partitions(root, table, dt)
    if not parts:
        where = f"{root}/{table}" + (f"/dt={dt}" if dt else "")
        raise C.ContractError(f"{where}: no parquet or csv files for table {table!r}")
    tables = [conform(_read_file(p.path, table, root), table, str(p.path), keep_extra) for p in parts]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise C.ContractError(f"{root}/{table}: files disagree on schema: {exc}") from exc


def write_table(
    tbl: pa.Table,
    path: Path | str,
    dictionary_columns: list[str] | None = None,
    row_group_size: int | None = None,
) -> Path:
    """Write a parquet file atomically (temp file in the same folder, then rename).

    `dictionary_columns`: dictionary-encode only these columns (default: all). Skipping dictionary
    attempts on high-cardinality columns (request ids, timestamps) makes large writes ~3x faster.
    `row_group_size`: rows per row group (default pyarrow's, 1M).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(
        tbl, tmp, use_dictionary=True if dictionary_columns is None else dictionary_columns,
        row_group_size=row_group_size,
    )
    os.replace(tmp, path)
    return path


def output_kind(path: Path | str) -> str | None:
    """The kind recorded in a folder's marker file (None: no marker, or not ours)."""
    try:
        return str(json.loads((Path(path) / MARKER).read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_marker(folder: Path | str, kind: str) -> None:
    """Mark `folder` as an output of kind `kind` made by this project (fixed bytes: reruns are identical)."""
    (Path(folder) / MARKER).write_text(json.dumps({"kind": kind, "written_by": "dacdr"}) + "\n")


def prepare_output(path: Path | str, kind: str, force: bool = False) -> Path:
    """`path` if writing a `kind` output there destroys nothing this project did not make.

    Allowed: a missing or empty folder, or one whose marker says `kind`. Anything else (a user's
    folder, another kind of output) raises OutputRefused unless `force`.
    """
    path = Path(path)
    if not path.exists() or force:
        return path
    if not path.is_dir():
        raise OutputRefused(f"{path}: exists and is not a folder")
    found = output_kind(path)
    if found == kind or (found is None and not any(path.iterdir())):
        return path
    what = f"holds a dacdr {found} output, not a {kind}" if found else "is not empty, not made by dacdr"
    raise OutputRefused(f"{path}: {what}; choose another folder, or pass --force to replace it")


@contextmanager
def atomic_dir(target: Path | str, kind: str | None = None) -> Iterator[Path]:
    """Yield a temp folder beside `target`; on success it replaces `target`, on error it is removed.

    Nothing half-written is ever visible at `target`. With `kind`, the new folder carries the
    marker that lets `prepare_output` replace it next time.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if kind is not None:
            write_marker(tmp, kind)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{uuid.uuid4().hex}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Whole-landing-zone contract check
# ---------------------------------------------------------------------------------------------


def _fail_if(mask: pa.ChunkedArray | pa.Array, source: str, problem: str, values: pa.ChunkedArray) -> None:
    """Raise ContractError naming `source`, `problem` and a few offending values when any of `mask`."""
    mask = pc.fill_null(mask, True)
    n_bad = pc.sum(pc.cast(mask, pa.int64())).as_py() or 0
    if n_bad:
        sample = pc.unique(values.filter(mask)).slice(0, 5).to_pylist()
        raise C.ContractError(f"{source}: {problem} ({n_bad} row(s), e.g. {sample})")


def _check_file(tbl: pa.Table, table: str, part: C.Partition) -> None:
    """Row-level rules of one contract-typed file: keys not null, enums, names, day partition."""
    src = str(part.path)
    for name in C.KEY_COLUMNS[table]:
        nulls = tbl.column(name).null_count
        if nulls:
            raise C.ContractError(f"{src}: {table}.{name} has {nulls} null value(s); it is a key column")
    if C.DOMAIN in tbl.column_names:
        dom = tbl.column(C.DOMAIN)
        _fail_if(
            pc.invert(pc.match_substring_regex(dom, C.DOMAIN_NAME_PATTERN)),
            src,
            f"{table}.{C.DOMAIN} has names not matching {C.DOMAIN_NAME_PATTERN}",
            dom,
        )
    if table == C.BEHAVIORS:
        beh = tbl.column(C.BEHAVIOR)
        _fail_if(
            pc.invert(pc.is_in(beh, pa.array(C.BEHAVIOR_TYPES))),
            src,
            f"behaviors.{C.BEHAVIOR} not in {list(C.BEHAVIOR_TYPES)}",
            beh,
        )
    if table == C.DOMAINS:
        for name, allowed in ((C.ROLE, C.ROLES), (C.TASK, C.TASKS)):
            col = tbl.column(name)
            _fail_if(
                pc.invert(pc.is_in(col, pa.array(allowed))),
                src,
                f"domains.{name} not in {list(allowed)}",
                col,
            )
    if table in C.EVENT_TABLES and part.dt is not None:
        # compare with the day's bounds as integers (formatting every timestamp is slow)
        start = int(datetime.fromisoformat(part.dt).replace(tzinfo=UTC).timestamp()) * 1_000_000
        us = tbl.column(C.EVENT_TIME).cast(pa.int64())
        outside = pc.or_(pc.less(us, start), pc.greater_equal(us, start + 86_400 * 1_000_000))
        _fail_if(outside, src, f"{C.EVENT_TIME} outside its partition dt={part.dt}", tbl.column(C.EVENT_TIME))


def _read_checked(root: Path, table: str) -> pa.Table:
    """Read and row-check every file of one table; ContractError naming the first bad file."""
    parts = data_partitions(root, table)
    if not parts:
        raise C.ContractError(f"{root}/{table}: no parquet or csv files for table {table!r}")
    tables = []
    for part in parts:
        tbl = conform(_read_file(part.path, table, root), table, str(part.path))
        _check_file(tbl, table, part)
        tables.append(tbl)
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise C.ContractError(f"{root}/{table}: files disagree on schema: {exc}") from exc


def check_contract(root: Path | str, tables: tuple[str, ...] = C.TABLES) -> dict[str, int]:
    """Read every file of `tables` under `root` and check the contract; returns rows per table.

    Raises ContractError naming the file (or table) and the problem: unreadable file, missing column,
    wrong type, null key, bad enum or domain name, event outside its day partition, duplicate domain,
    an event whose domain is not in the domains table (or has the wrong role), a label outside its
    task's range, an item missing from the items table. Cross-table rules run when both tables are
    in `tables` (e.g. an onboarding zone holds only impressions and domains).
    """
    root = Path(root)
    data = {t: _read_checked(root, t) for t in tables}
    if C.DOMAINS in data:
        dom = data[C.DOMAINS]
        names = dom.column(C.DOMAIN)
        if len(pc.unique(names)) != len(names):
            counts = pc.value_counts(names).to_pylist()
            dups = [c["values"] for c in counts if c["counts"] > 1]
            raise C.ContractError(f"{root}/{C.DOMAINS}: domain(s) listed more than once: {dups}")
        roles = dict(zip(names.to_pylist(), dom.column(C.ROLE).to_pylist(), strict=True))
        tasks = dict(zip(names.to_pylist(), dom.column(C.TASK).to_pylist(), strict=True))
        for table, role in ((C.IMPRESSIONS, C.ROLE_TARGET), (C.BEHAVIORS, None)):
            if table not in data:
                continue
            used = pc.unique(data[table].column(C.DOMAIN)).to_pylist()
            unknown = sorted(d for d in used if d not in roles)
            if unknown:
                raise C.ContractError(f"{root}/{table}: domain(s) {unknown} are not in the domains table")
            wrong = sorted(d for d in used if role is not None and roles[d] != role)
            if wrong:
                raise C.ContractError(f"{root}/{table}: domain(s) {wrong} have role != {role!r}")
        if C.IMPRESSIONS in data:
            imp = data[C.IMPRESSIONS]
            for name, task in tasks.items():
                rows = imp.filter(pc.equal(imp.column(C.DOMAIN), name))
                label = rows.column(C.LABEL)
                if task == C.TASK_CTR:
                    bad = pc.invert(pc.is_in(label, pa.array([0.0, 1.0])))
                    problem = f"labels of ctr domain {name!r} must be 0 or 1"
                else:
                    bad = pc.or_(pc.less(label, C.RATING_MIN), pc.greater(label, C.RATING_MAX))
                    problem = f"labels of rating domain {name!r} must lie in [{C.RATING_MIN}, {C.RATING_MAX}]"
                _fail_if(bad, f"{root}/{C.IMPRESSIONS}", problem, label)
    if C.ITEMS in data:
        items = data[C.ITEMS].column(C.ITEM_ID)
        if len(pc.unique(items)) != len(items):
            raise C.ContractError(f"{root}/{C.ITEMS}: item_id is not unique")
        for table in C.EVENT_TABLES:
            if table in data:
                ids = data[table].column(C.ITEM_ID)
                _fail_if(
                    pc.invert(pc.is_in(ids, items)),
                    f"{root}/{table}",
                    f"{C.ITEM_ID} values missing from the {C.ITEMS} table",
                    ids,
                )
    return {t: tbl.num_rows for t, tbl in data.items()}
