"""Validate one day of the landing zone with Great Expectations: curated rows, quarantined rows
(with the failing rule names), GX Data Docs and a JSON summary.

Row-level rules (suites.row_rules) are computed as vectorised masks; GX validates the masks and
the row counts, and its results decide what is accepted. Table-level failures (schema, empty or
unreadable files, row-count anomalies, a bad domains table) raise ValidationFailed before
anything reaches the curated zone. See docs/data-quality.md.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dacdr.engine import LOCAL, RAY
from features import contract as C
from features import suites
from features.gx_checkpoint import GxRun
from features.io import (
    LAKE_OUTPUT,
    atomic_dir,
    conform,
    data_partitions,
    output_kind,
    stray_files,
    write_marker,
    write_table,
)
from features.landing import Batch, LandingFileError, read_landing_file
from features.rule_masks import task_rows

REASON = "reason"
REASON_SEP = ";"
CURATED, QUARANTINE, REPORTS, DATA_DOCS = "curated", "quarantine", "reports", "data_docs"
DIMENSION_TABLES: tuple[str, ...] = (C.DOMAINS, C.ITEMS)
_DT_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
logger = logging.getLogger(__name__)


class ValidationFailed(Exception):
    """A table-level failure: the day is rejected and the curated zone is left untouched."""

    def __init__(self, table: str, source: str, expectation: str, detail: str) -> None:
        """Keep the parts so callers and tests can inspect them; the message names all of them."""
        self.table, self.source, self.expectation, self.detail = table, source, expectation, detail
        super().__init__(f"{table} ({source}): expectation {expectation!r} failed: {detail}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str]]:
        """Pickle with the four parts (Prefect persists task exceptions)."""
        return (type(self), (self.table, self.source, self.expectation, self.detail))


@dataclass(frozen=True)
class ValidationConfig:
    """Knobs of a validation run."""

    count_bounds: suites.CountBounds = field(default_factory=suites.CountBounds)
    data_docs: bool = True  # render GX Data Docs (about a second per run; tests of many faults skip it)
    # where the event tables' row rules run: local, or ray (features.ray_data, the same masks)
    engine: str = LOCAL
    # read symbolic links in the landing zone: only for a zone this project staged itself
    # (flows.onboard links the main curated tables); a user's zone never
    follow_links: bool = False


@dataclass
class TableSummary:
    """Row accounting of one table: accepted + quarantined == read."""

    read: int
    accepted: int
    quarantined: int
    failures: dict[str, int]  # failing rule -> failing rows
    row_count_limits: tuple[int, int | None] | None = None


@dataclass
class ValidationSummary:
    """What `validate_day` did: per-table counts, where the outputs and the Data Docs are."""

    dt: str
    status: str  # "ok" or "failed"
    tables: dict[str, TableSummary]
    data_docs: str | None
    report: str
    error: str | None = None
    # things that did not stop the run but need a look: stray files no reader reads, parquet
    # columns of the wrong type that were parsed value by value
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the summary."""
        return asdict(self)

    def render(self) -> str:
        """A short human-readable summary."""
        lines = [f"validate dt={self.dt}: {self.status}"]
        for name, t in self.tables.items():
            fails = ", ".join(f"{k}={v}" for k, v in sorted(t.failures.items())) or "-"
            lines.append(
                f"  {name:<12} read={t.read} accepted={t.accepted} "
                f"quarantined={t.quarantined} failing: {fails}"
            )
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        if self.error:
            lines.append(f"  error: {self.error}")
        lines.append(f"  data docs: {self.data_docs}")
        lines.append(f"  report: {self.report}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# reading (features.landing parses each file; a table-level problem fails the run)
# ---------------------------------------------------------------------------------------------


def _read_batch(root: Path, table: str, dt: str | None, follow_links: bool = False) -> Batch:
    """Read and concatenate every landing file of a table (one day for event tables)."""
    try:
        parts = data_partitions(root, table, dt)
        batches = [read_landing_file(p.path, table, root, follow_links) for p in parts]
    except LandingFileError as exc:
        raise ValidationFailed(table, exc.source, exc.rule, exc.detail) from None
    stray = stray_files(root, table, dt)
    notes = [f"{root}/{table}: stray file(s) not read: {[str(p) for p in stray]}"] if stray else []
    if not parts:
        where = f"{root}/{table}" + (f"/dt={dt}" if dt else "")
        also = f" (stray file(s) not read: {[p.name for p in stray]})" if stray else ""
        raise ValidationFailed(table, where, suites.TABLE_PRESENT, f"no parquet or csv files{also}")
    notes += [w for b in batches for w in b.warnings]
    try:
        tbl = pa.concat_tables([b.table for b in batches], promote_options="permissive")
    except pa.ArrowInvalid as exc:  # domains files with different feature columns that cannot merge
        raise ValidationFailed(
            table, f"{root}/{table}", suites.COLUMNS_MATCH_CONTRACT, f"files disagree: {exc}"
        ) from exc
    unparsable: dict[str, np.ndarray] = {}
    for col in {c for b in batches for c in b.unparsable}:
        unparsable[col] = np.concatenate(
            [b.unparsable.get(col, np.zeros(b.table.num_rows, bool)) for b in batches]
        )
    return Batch(tbl.combine_chunks(), unparsable, notes)


# ---------------------------------------------------------------------------------------------
# the day
# ---------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """The verdict on one table: accepted rows, quarantined rows (with reason) and the summary."""

    accepted: pa.Table
    quarantined: pa.Table
    summary: TableSummary
    table_failures: list[tuple[str, str]]  # (rule, detail) of failed table-level expectations


def _agree(table: str, rule: suites.RowRule, res: dict[str, Any], n_bad: int) -> None:
    """RuntimeError unless GX's verdict and count agree with the mask's (one rule, two evaluations)."""
    if rule.gx is None:  # GX checked the computed failure column
        ok = res["success"] == (n_bad == 0)
    else:
        gx_bad = int(res["unexpected_count"] or 0)
        ok = res["success"] == (gx_bad == 0) and (
            gx_bad == n_bad
            if rule.gx.counts == suites.EXACT
            else gx_bad >= n_bad and (gx_bad > 0 or n_bad == 0)
        )
    if not ok:
        raise RuntimeError(
            f"{table}.{rule.name}: GX success={res['success']} unexpected={res.get('unexpected_count')} "
            f"but the mask fails {n_bad} row(s)"
        )


def _reasons(masks: dict[str, np.ndarray], failed: list[str], bad_idx: np.ndarray) -> pa.Array:
    """The `reason` of each quarantined row: the names of the rules it fails, joined by ';'."""
    reason = pd.Series([""] * len(bad_idx), dtype=object)
    for name in failed:
        fails = ~masks[name][bad_idx]
        reason = reason.where(~fails, reason + name + REASON_SEP)
    return pa.array(reason.str.rstrip(REASON_SEP), pa.string())


def _judge(
    gxr: GxRun,
    table: str,
    dt: str,
    batch: Batch,
    ctx: suites.RuleContext,
    limits: tuple[int, int | None] | None,
    engine: str = LOCAL,
) -> _Outcome:
    """Evaluate the rule masks, let GX validate them, and split the batch by GX's verdict."""
    rules = suites.row_rules(table)
    ctx = replace(ctx, unparsable=batch.unparsable)
    if engine == RAY and table in C.EVENT_TABLES and batch.table.num_rows:
        from features import ray_data

        masks = ray_data.evaluate_rules(batch.table, table, ctx)
    else:  # the dimension tables are small: always here
        masks = suites.evaluate_rules(batch.table, rules, ctx)
    # GX reads the data's own columns, plus a failure column for each rule it has no expectation for
    # and a task's rows of a column for each rule limited to one task (GxForm.task); appended in Arrow,
    # so the batch is converted once. Strings as categoricals: GX's null and set checks then read
    # integer codes, not Python objects
    data = batch.table.select(C.columns(table))
    for rule in rules:
        if rule.gx is None:
            data = data.append_column(rule.name, pa.array((~masks[rule.name]).view(np.uint8)))
        elif rule.gx.task is not None:
            column = rule.gx.kwargs(ctx)["column"]
            data = data.append_column(rule.name, task_rows(data, ctx, column, rule.gx.task))
    frame = data.to_pandas(strings_to_categorical=True)
    results = gxr.validate(table, dt, frame, suites.build_suite(table, rules, limits, ctx))
    levels = {r.name: r.level for r in rules}
    by_name = {r.name: r for r in rules}
    failed_rows: list[str] = []
    table_failures: list[tuple[str, str]] = []
    failures: dict[str, int] = {}
    for name, res in results.items():
        if name == suites.ROW_COUNT_IN_BOUNDS:
            if not res["success"]:
                failures[name] = int(res["observed_value"])
                table_failures.append((name, f"{res['observed_value']} rows, allowed {list(limits or ())}"))
            continue
        n_bad = int((~masks[name]).sum())  # GX decides whether the rule failed; the mask locates rows
        _agree(table, by_name[name], res, n_bad)
        if res["success"] or not n_bad:  # (AT_LEAST: GX's rows may all be another rule's to report)
            continue
        failures[name] = n_bad
        if levels[name] == suites.TABLE:
            table_failures.append(
                (name, f"{n_bad} row(s) fail: {next(r.description for r in rules if r.name == name)}")
            )
        else:
            failed_rows.append(name)
    ok = np.ones(batch.table.num_rows, bool)
    for name in failed_rows:
        ok &= masks[name]
    bad_idx = np.flatnonzero(~ok)
    accepted = batch.table.filter(pa.array(ok)) if len(bad_idx) else batch.table
    quarantined = batch.table.take(pa.array(bad_idx, pa.int64())).append_column(
        REASON, _reasons(masks, failed_rows, bad_idx)
    )
    summary = TableSummary(batch.table.num_rows, accepted.num_rows, quarantined.num_rows, failures, limits)
    return _Outcome(accepted, quarantined, summary, table_failures)


def _history(out: Path, dt: str, table: str, window: int) -> list[int]:
    """Rows read of `table` on the up-to-`window` latest accepted days before `dt` (oldest first)."""
    days: list[tuple[str, int]] = []
    for path in sorted((out / REPORTS).glob("dt=*.json")):
        day = path.stem.removeprefix("dt=")
        if day >= dt:
            continue
        rep = json.loads(path.read_text())
        if rep.get("status") == "ok" and table in rep.get("tables", {}):
            days.append((day, int(rep["tables"][table]["read"])))
    return [n for _, n in days[-window:]] if window > 0 else []


def _fail(
    summary_tables: dict[str, TableSummary],
    dt: str,
    out: Path,
    docs: str | None,
    exc: ValidationFailed,
    warnings: list[str] | None = None,
) -> ValidationFailed:
    """Write the failed run's report (never the curated zone) and return the exception to raise."""
    report = out / REPORTS / f"dt={dt}.json"
    summary = ValidationSummary(dt, "failed", summary_tables, docs, str(report), str(exc), warnings or [])
    report.parent.mkdir(parents=True, exist_ok=True)
    _write_json(report, summary.to_json())
    return exc


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def _write_zone(root: Path, table: str, dt: str | None, tbl: pa.Table) -> None:
    """Replace one partition folder (or a dimension table's folder) with `tbl`, atomically."""
    target = root / table / f"dt={dt}" if dt is not None else root / table
    with atomic_dir(target) as tmp:
        write_table(tbl, tmp / "part-0.parquet")


def validate_day(
    logs: Path, dt: str, out: Path, now: datetime | None = None, config: ValidationConfig | None = None
) -> ValidationSummary:
    """Validate day `dt` of the landing zone `logs` into `out` (curated/, quarantine/, reports/, data_docs/).

    Raises ValidationFailed (curated zone untouched) on a table-level failure.
    """
    logs, out = Path(logs), Path(out)
    config = config or ValidationConfig()
    if not _DT_FORMAT.match(dt):
        raise ValueError(f"dt must be YYYY-MM-DD, got {dt!r}")
    day_start = datetime.strptime(dt, "%Y-%m-%d").replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    out.mkdir(parents=True, exist_ok=True)
    if output_kind(out) != LAKE_OUTPUT:
        write_marker(out, LAKE_OUTPUT)  # what lets `validate --out` write here again
    gxr = GxRun(out / DATA_DOCS)
    tables: dict[str, TableSummary] = {}
    outcomes: dict[str, _Outcome] = {}
    warnings: list[str] = []
    ctx = suites.RuleContext(dt=dt, day_start=day_start, day_end=day_start + timedelta(days=1), now=now)
    try:
        # dimension tables first: the event tables' rules look items and domains up
        for table in (C.DOMAINS, C.ITEMS, *C.EVENT_TABLES):
            batch = _read_batch(logs, table, dt if table in C.EVENT_TABLES else None, config.follow_links)
            for warning in batch.warnings:
                logger.warning("validate dt=%s: %s", dt, warning)
            warnings += batch.warnings
            limits = None
            if table in C.EVENT_TABLES:
                hist = _history(out, dt, table, config.count_bounds.window)
                limits = suites.count_limits(hist, config.count_bounds)
            res = _judge(gxr, table, dt, batch, ctx, limits, config.engine)
            outcomes[table], tables[table] = res, res.summary
            if res.table_failures:
                rule, detail = res.table_failures[0]
                more = "; ".join(f"{r}: {d}" for r, d in res.table_failures[1:])
                raise ValidationFailed(
                    table, f"{logs}/{table}", rule, detail + (f" (also {more})" if more else "")
                )
            if table == C.DOMAINS:
                d = res.accepted
                tasks = dict(zip(d[C.DOMAIN].to_pylist(), d[C.TASK].to_pylist(), strict=True))
                roles = dict(zip(d[C.DOMAIN].to_pylist(), d[C.ROLE].to_pylist(), strict=True))
                ctx = replace(ctx, domain_tasks=tasks, domain_roles=roles)
            elif table == C.ITEMS:
                ctx = replace(ctx, item_ids=res.accepted.column(C.ITEM_ID).combine_chunks())
    except ValidationFailed as exc:
        docs = gxr.build_docs() if config.data_docs else None
        raise _fail(tables, dt, out, docs, exc, warnings) from None
    # every table passed its table-level expectations: publish (each folder swapped atomically)
    for table, res in outcomes.items():
        day = dt if table in C.EVENT_TABLES else None
        # curated rows carry exactly the contract schema (keys non-nullable), like any landing zone
        _write_zone(out / CURATED, table, day, conform(res.accepted, table, f"curated {table}"))
        _write_zone(out / QUARANTINE, table, dt, res.quarantined)
    docs = gxr.build_docs() if config.data_docs else None
    report = out / REPORTS / f"dt={dt}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    summary = ValidationSummary(dt, "ok", tables, docs, str(report), warnings=warnings)
    _write_json(report, summary.to_json())
    return summary
