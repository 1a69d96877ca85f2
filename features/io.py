"""Read and write contract tables: casting to contract types, clear errors, atomic writes."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features import contract as C


def _read_file(path: Path, table: str) -> pa.Table:
    """Read one parquet/csv file as-is; ContractError naming the file when it cannot be read."""
    try:
        if path.suffix.lower() == ".csv":
            schema = C.SCHEMAS[table]
            types = {f.name: f.type for f in schema}
            opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
            return pacsv.read_csv(path, convert_options=opts)
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


def read_table(root: Path | str, table: str, dt: str | None = None, keep_extra: bool = False) -> pa.Table:
    """Read every file of a contract table (optionally one day) as one contract-typed table."""
    parts = C.list_partitions(root, table, dt)
    if not parts:
        where = f"{root}/{table}" + (f"/dt={dt}" if dt else "")
        raise C.ContractError(f"{where}: no parquet or csv files for table {table!r}")
    tables = [conform(_read_file(p.path, table), table, str(p.path), keep_extra) for p in parts]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise C.ContractError(f"{root}/{table}: files disagree on schema: {exc}") from exc


def write_table(tbl: pa.Table, path: Path | str) -> Path:
    """Write a parquet file atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(tbl, tmp)
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
