"""Read and write contract tables: casting to contract types, clear errors, atomic writes."""

from __future__ import annotations

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
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features import contract as C

_TZ_SUFFIX = r"(Z|z|[+-]\d{2}:?\d{2})$"


def _parse_csv_timestamps(col: pa.ChunkedArray, source: str, name: str) -> pa.ChunkedArray:
    """ISO strings to UTC timestamps: values with a zone offset keep it, naive values are UTC."""
    has_tz = pc.match_substring_regex(col, _TZ_SUFFIX)
    try:
        aware = pc.if_else(has_tz, col, pa.scalar(None, pa.string())).cast(C.TIMESTAMP)
        naive = pc.if_else(has_tz, pa.scalar(None, pa.string()), col).cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise C.ContractError(f"{source}: column {name} holds values that are not timestamps: {exc}") from exc
    return pc.coalesce(aware, pc.assume_timezone(naive, "UTC"))


def _read_file(path: Path, table: str) -> pa.Table:
    """Read one parquet/csv file as-is; ContractError naming the file when it cannot be read."""
    try:
        if path.suffix.lower() == ".csv":
            schema = C.SCHEMAS[table]
            # contract columns are read as text: conform() casts them and names the bad column, and
            # timestamps are parsed below because CSV may mix naive (=UTC) and offset values
            types = dict.fromkeys(schema.names, pa.string())
            opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
            tbl = pacsv.read_csv(path, convert_options=opts)
            for f in schema:
                if pa.types.is_timestamp(f.type) and f.name in tbl.column_names:
                    idx = tbl.column_names.index(f.name)
                    parsed = _parse_csv_timestamps(tbl.column(idx), str(path), f.name)
                    tbl = tbl.set_column(idx, f.name, parsed)
            return tbl
        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise C.ContractError(f"{path}: unreadable {table} file: {exc}") from exc


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
    tables = [conform(_read_file(p.path, table), table, str(p.path), keep_extra) for p in parts]
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


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield a temp folder beside `target`; on success it replaces `target`, on error it is removed.

    Nothing half-written is ever visible at `target`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
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
        tbl = conform(_read_file(part.path, table), table, str(part.path))
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
