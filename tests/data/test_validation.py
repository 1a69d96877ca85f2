"""features.validation: GX-gated split into curated/quarantine, exact row accounting, the bad-batch
corpus (row-level faults quarantined with the right reason, table-level faults fail the run and
leave the curated zone untouched), idempotent re-runs, count bounds, the CLI and the tiny preset."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import contract as C
from features import io, suites
from features.validation import REASON, ValidationConfig, ValidationFailed, validate_day
from tests.data import bad_batches as BB

FAST = ValidationConfig(data_docs=False)  # Data Docs are checked once, in test_good_day
ROW_FAULTS = [f for f in BB.FAULTS if f.level == suites.ROW]
TABLE_FAULTS = [f for f in BB.FAULTS if f.level == suites.TABLE]
HISTORY_DAYS = 3


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (empty when root does not exist)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _out_day(out: Path, zone: str, table: str) -> pa.Table:
    """The day's rows of one table in the curated or quarantine zone (raw parquet, all columns)."""
    if zone == "curated" and table not in C.EVENT_TABLES:
        return pq.read_table(out / zone / table)
    return pq.read_table(out / zone / table / f"dt={BB.DT}")


@pytest.fixture(scope="module")
def good() -> dict[str, pa.Table]:
    """The good batch every fault starts from."""
    return BB.good_tables()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A landing zone with HISTORY_DAYS accepted days before DT (validated) and a good DT."""
    root = tmp_path_factory.mktemp("history")
    logs, out = root / "logs", root / "out"
    for k in range(HISTORY_DAYS, 0, -1):
        day = (BB.DAY_START - timedelta(days=k)).date().isoformat()
        tables = BB.good_tables(day, seed=k)
        BB.write_landing(logs, {t: tables[t] for t in C.EVENT_TABLES}, day)
        BB.write_landing(logs, {t: tables[t] for t in (C.ITEMS, C.DOMAINS)})
        validate_day(logs, day, out, now=BB.NOW, config=FAST)
    BB.write_landing(logs, BB.good_tables())
    return logs, out


def test_good_day(tmp_path: Path, good: dict[str, pa.Table]) -> None:
    """A clean day: everything accepted, curated zone readable by io.read_table, report + Data Docs."""
    logs = BB.write_good_landing(tmp_path / "logs")
    out = tmp_path / "out"
    summary = validate_day(logs, BB.DT, out, now=BB.NOW)
    assert summary.status == "ok"
    for table in C.TABLES:
        t = summary.tables[table]
        assert (t.read, t.accepted, t.quarantined) == (good[table].num_rows, good[table].num_rows, 0)
        curated = io.read_table(out / "curated", table, BB.DT if table in C.EVENT_TABLES else None)
        expected = C.SCHEMAS[table].names + (["theme"] if table == C.DOMAINS else [])
        assert curated.column_names == expected
        assert curated.to_pylist() == good[table].to_pylist()
        raw = _out_day(out, "curated", table)
        assert raw.schema.names == expected  # exactly the contract's columns, no helper columns
        assert [raw.schema.field(n).type for n in C.columns(table)] == [f.type for f in C.SCHEMAS[table]]
        quarantine = _out_day(out, "quarantine", table)
        assert quarantine.num_rows == 0 and quarantine.column_names[-1] == REASON
    report = json.loads((out / "reports" / f"dt={BB.DT}.json").read_text())
    assert report["status"] == "ok"
    assert report["tables"][C.IMPRESSIONS]["read"] == good[C.IMPRESSIONS].num_rows
    docs = Path(report["data_docs"])
    assert docs.is_file() and docs.parent == out / "data_docs"
    pages = list((out / "data_docs" / "validations").rglob("*.html"))
    assert {p.parent.parent.parent.name for p in pages} == set(C.TABLES)  # one GX validation per table
    assert "data_docs/index.html" in summary.render() and "read=100 accepted=100" in summary.render()


@pytest.mark.parametrize("fault", ROW_FAULTS, ids=[f.name for f in ROW_FAULTS])
def test_row_level_fault_is_quarantined(tmp_path: Path, good: dict[str, pa.Table], fault: BB.Fault) -> None:
    """Corrupted rows go to quarantine with the fault's rule as reason; every good row is accepted."""
    logs = BB.write_good_landing(tmp_path / "logs")
    bad = fault.apply(logs, good)
    out = tmp_path / "out"
    summary = validate_day(logs, BB.DT, out, now=BB.NOW, config=FAST)
    assert summary.status == "ok"
    for table in C.TABLES:
        t = summary.tables[table]
        curated, quarantine = _out_day(out, "curated", table), _out_day(out, "quarantine", table)
        # exact accounting, both in the summary and in the files
        assert t.accepted + t.quarantined == t.read
        assert (curated.num_rows, quarantine.num_rows) == (t.accepted, t.quarantined)
        if table != fault.table:
            assert (t.quarantined, curated.to_pylist()) == (0, good[table].to_pylist())
            continue
        assert t.read == good[table].num_rows + sum(1 for b in bad if b >= good[table].num_rows)
        assert t.quarantined == len(bad)
        reasons = quarantine.column(REASON).to_pylist()
        assert all(fault.rule in r for r in reasons), reasons
        assert any(fault.rule in name for name in t.failures)
        keep = np.ones(good[table].num_rows, bool)
        keep[[b for b in bad if b < good[table].num_rows]] = False
        expected = good[table].filter(pa.array(keep))
        assert curated.select(C.columns(table)).to_pylist() == expected.select(C.columns(table)).to_pylist()


@pytest.mark.parametrize("fault", TABLE_FAULTS, ids=[f.name for f in TABLE_FAULTS])
def test_table_level_fault_fails_the_run(
    tmp_path: Path, good: dict[str, pa.Table], history: tuple[Path, Path], fault: BB.Fault
) -> None:
    """The run raises ValidationFailed naming table and expectation; the curated zone is untouched."""
    if fault.history_days:
        logs, out = tmp_path / "logs", tmp_path / "out"
        shutil.copytree(history[0], logs)
        shutil.copytree(history[1], out)
    else:
        logs, out = BB.write_good_landing(tmp_path / "logs"), tmp_path / "out"
    before = _snapshot(out / "curated")
    fault.apply(logs, good)
    with pytest.raises(ValidationFailed) as info:
        validate_day(logs, BB.DT, out, now=BB.NOW, config=FAST)
    exc = info.value
    assert (exc.table, exc.expectation) == (fault.table, fault.rule)
    assert fault.table in str(exc) and fault.rule in str(exc)
    assert _snapshot(out / "curated") == before
    assert not (out / "curated" / fault.table / f"dt={BB.DT}").exists()
    report = json.loads((out / "reports" / f"dt={BB.DT}.json").read_text())
    assert report["status"] == "failed" and fault.rule in report["error"]
    assert str(pickle.loads(pickle.dumps(exc))) == str(exc)  # orchestrators persist exceptions


def test_fault_corpus_is_broad() -> None:
    """At least 15 distinct faults, both levels, over every table kind."""
    assert len({f.name for f in BB.FAULTS}) == len(BB.FAULTS) >= 15
    assert {f.table for f in ROW_FAULTS} >= {C.IMPRESSIONS, C.BEHAVIORS, C.ITEMS}
    assert {f.table for f in TABLE_FAULTS} >= {C.IMPRESSIONS, C.DOMAINS}


def test_rerun_replaces_the_day_and_failed_rerun_keeps_it(tmp_path: Path, good: dict[str, pa.Table]) -> None:
    """Re-running a day replaces its output (no duplicates); a failing re-run leaves it as it was."""
    logs = BB.write_good_landing(tmp_path / "logs")
    out = tmp_path / "out"
    validate_day(logs, BB.DT, out, now=BB.NOW, config=FAST)
    BB.FAULTS[0].apply(logs, good)  # two null user ids: the second run quarantines them
    second = validate_day(logs, BB.DT, out, now=BB.NOW, config=FAST)
    assert second.tables[C.IMPRESSIONS].quarantined == 2
    n = good[C.IMPRESSIONS].num_rows
    assert io.read_table(out / "curated", C.IMPRESSIONS).num_rows == n - 2
    assert len(list((out / "curated" / C.IMPRESSIONS).rglob("*.parquet"))) == 1
    assert io.read_table(out / "curated", C.ITEMS).num_rows == good[C.ITEMS].num_rows
    before = _snapshot(out / "curated")
    next(f for f in BB.FAULTS if f.name == "truncated_parquet").apply(logs, good)
    with pytest.raises(ValidationFailed, match="truncated"):
        validate_day(logs, BB.DT, out, now=BB.NOW, config=FAST)
    assert _snapshot(out / "curated") == before


def test_count_bounds_are_configurable(
    tmp_path: Path, good: dict[str, pa.Table], history: tuple[Path, Path]
) -> None:
    """A 6x spike fails under the default [0.2x, 5x] bounds and passes under [0.2x, 10x]."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    shutil.copytree(history[0], logs)
    shutil.copytree(history[1], out)
    next(f for f in BB.FAULTS if f.name == "count_spike").apply(logs, good)
    with pytest.raises(ValidationFailed, match=suites.ROW_COUNT_IN_BOUNDS):
        validate_day(logs, BB.DT, out, now=BB.NOW, config=FAST)
    wide = ValidationConfig(suites.CountBounds(high=10.0), data_docs=False)
    summary = validate_day(logs, BB.DT, out, now=BB.NOW, config=wide)
    assert summary.tables[C.IMPRESSIONS].row_count_limits == (40, 2000)  # median 200 rows
    assert summary.tables[C.IMPRESSIONS].accepted == 1200


def test_limits_from_history() -> None:
    """count_limits uses the median of the last `window` days, and no upper bound without history."""
    bounds = suites.CountBounds(low=0.5, high=2.0, window=3)
    assert suites.count_limits([], bounds) == (1, None)
    assert suites.count_limits([1000, 10, 20, 30], bounds) == (10, 40)


def test_bad_dt_is_rejected(tmp_path: Path) -> None:
    """A malformed day string is a clear error."""
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        validate_day(tmp_path, "2024/03/05", tmp_path / "out")


def test_cli_exit_codes(tmp_path: Path, good: dict[str, pa.Table]) -> None:
    """`dacdr validate` prints the summary and exits 0; a table-level failure exits 1 naming it."""
    from typer.testing import CliRunner

    from dacdr.cli import app

    logs = BB.write_good_landing(tmp_path / "logs")
    out = tmp_path / "out"
    args = ["validate", "--logs", str(logs), "--dt", BB.DT, "--out", str(out), "--no-data-docs"]
    # the CLI uses the real clock; the good batch lies in the past, so nothing is "future"
    ok = CliRunner().invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert f"impressions  read={good[C.IMPRESSIONS].num_rows}" in ok.output
    next(f for f in BB.FAULTS if f.name == "missing_column").apply(logs, good)
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 1
    assert suites.COLUMNS_MATCH_CONTRACT in bad.output and "FAILED" in bad.output


def test_tiny_preset_days_validate(tiny_logs: Path, tmp_path: Path) -> None:
    """The simulator's tiny zone validates clean, and the curated zone is itself a valid landing zone."""
    days = C.list_days(tiny_logs)[:2]
    for dt in days:
        summary = validate_day(tiny_logs, dt, tmp_path / "out", config=FAST)
        for t in summary.tables.values():
            assert t.accepted + t.quarantined == t.read
        assert summary.tables[C.IMPRESSIONS].quarantined == 0
        assert summary.tables[C.IMPRESSIONS].read == io.read_table(tiny_logs, C.IMPRESSIONS, dt).num_rows
    curated = tmp_path / "out" / "curated"
    assert C.list_days(curated) == days
    for table in C.TABLES:
        assert io.read_table(curated, table).num_rows > 0


def test_unique_rule_keeps_first_eligible_copy() -> None:
    """Uniqueness keeps each key's first copy among rows passing the other rules; others fail."""
    tbl = pa.table({C.REQUEST_ID: ["a", "a", "b", "a", "b", "c"], C.ITEM_ID: [1, 1, 1, 2, 1, 1]})
    rule = next(r for r in suites.row_rules(C.IMPRESSIONS) if r.name == "unique_request_item")
    ctx = suites.RuleContext(dt=BB.DT, day_start=BB.DAY_START, day_end=BB.DAY_START, now=BB.NOW)
    assert rule.check(tbl, ctx).tolist() == [True, False, True, True, False, True]
    # row 0 fails another rule: row 1 becomes the kept copy, row 0 is not blamed as a duplicate
    passed = np.array([False, True, True, True, True, True])
    masks = rule.check(tbl, replace(ctx, passed_others=passed))
    assert masks.tolist() == [True, True, True, True, False, True]


def test_gx_suite_has_one_expectation_per_rule() -> None:
    """The GX suite is generated from the rules: one expectation each, plus the row-count bounds."""
    import great_expectations as gx

    gx.get_context(mode="ephemeral")  # GX suites are built inside an active context
    rules = suites.row_rules(C.IMPRESSIONS)
    suite = suites.build_suite(C.IMPRESSIONS, rules, (10, 50))
    names = [e.meta[suites.META_RULE] for e in suite.expectations]
    assert names == [r.name for r in rules] + [suites.ROW_COUNT_IN_BOUNDS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "fault", [f for f in ROW_FAULTS if f.name.startswith("null_")], ids=lambda f: f.name
)
def test_a_null_is_reported_once(tmp_path: Path, good: dict[str, pa.Table], fault: BB.Fault) -> None:
    """A null key is quarantined under its not_null rule alone (a null ctr label is not also 'not binary')."""
    logs = BB.write_good_landing(tmp_path / "logs")
    fault.apply(logs, good)
    validate_day(logs, BB.DT, tmp_path / "out", now=BB.NOW, config=FAST)
    reasons = _out_day(tmp_path / "out", "quarantine", fault.table).column(REASON).to_pylist()
    assert reasons and set(reasons) == {fault.rule}, reasons


def test_parquet_of_another_type_is_parsed_like_csv_and_reported(
    tmp_path: Path, good: dict[str, pa.Table]
) -> None:
    """Parquet user_id as text: parsable values accepted, the bad one quarantined, the report warns."""
    logs = BB.write_good_landing(tmp_path / "logs")
    fault = next(f for f in ROW_FAULTS if f.name == "string_ids")
    fault.apply(logs, good)
    summary = validate_day(logs, BB.DT, tmp_path / "out", now=BB.NOW, config=FAST)
    assert summary.tables[C.IMPRESSIONS].quarantined == 2
    (warning,) = [w for w in summary.warnings if "column user_id" in w]
    assert "type string, expected int64" in warning and "2 unparsable row(s)" in warning
    assert "warning: " in summary.render()


def test_stray_files_are_reported(tmp_path: Path) -> None:
    """A compressed file and a file outside any dt= folder are not read, and the report names both."""
    logs = BB.write_good_landing(tmp_path / "logs")
    day = logs / C.IMPRESSIONS / f"dt={BB.DT}"
    (day / "part-1.PARQUET.gz").write_bytes(b"\x1f\x8b\x08")
    shutil.copy(day / "part-0.parquet", logs / C.IMPRESSIONS / "stray.parquet")
    (logs / C.IMPRESSIONS / f".dt={BB.DT}.old.0a1b").mkdir()  # swap leftover: never read
    shutil.copy(day / "part-0.parquet", logs / C.IMPRESSIONS / f".dt={BB.DT}.old.0a1b" / "part-0.parquet")
    summary = validate_day(logs, BB.DT, tmp_path / "out", now=BB.NOW, config=FAST)
    assert summary.status == "ok" and summary.tables[C.IMPRESSIONS].read == 200
    (warning,) = [w for w in summary.warnings if "stray" in w]
    assert "part-1.PARQUET.gz" in warning and "stray.parquet" in warning
    report = json.loads(Path(summary.report).read_text())
    assert report["warnings"] == summary.warnings


def test_gx_expectations_read_the_data_columns() -> None:
    """Rules GX can state are expectations on the data's own columns, not on failure columns."""
    import great_expectations as gx

    gx.get_context(mode="ephemeral")
    ctx = suites.RuleContext(
        dt=BB.DT, day_start=BB.DAY_START, day_end=BB.DAY_START + timedelta(days=1), now=BB.NOW,
        domain_tasks={"tgt_movies": C.TASK_CTR}, domain_roles={"tgt_movies": C.ROLE_TARGET},
    )
    suite = suites.build_suite(C.IMPRESSIONS, suites.row_rules(C.IMPRESSIONS), None, ctx)
    by_rule = {e.meta[suites.META_RULE]: e for e in suite.expectations}
    assert type(by_rule["not_null:user_id"]).__name__ == "ExpectColumnValuesToNotBeNull"
    assert by_rule["not_null:user_id"].column == C.USER_ID
    assert by_rule["domain_known"].value_set == ["tgt_movies"]
    # a task's label rule reads the label of that task's rows (a column of its own, null elsewhere)
    label_ctr = by_rule["label_ctr_binary"]
    assert label_ctr.column == "label_ctr_binary" and not label_ctr.row_condition
    assert type(by_rule["unique_request_item"]).__name__ == "ExpectCompoundColumnsToBeUnique"
    computed = {n for n, e in by_rule.items() if type(e).__name__ == "ExpectColumnMaxToBeBetween"}
    assert computed == {r.name for r in suites.row_rules(C.IMPRESSIONS) if r.gx is None}
    assert len(computed) < len(by_rule) / 2


def test_gx_and_mask_disagreeing_stops_the_run(
    tmp_path: Path, good: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mask that misses rows GX finds is a RuntimeError, never a silent pass."""
    logs = BB.write_good_landing(tmp_path / "logs")
    next(f for f in ROW_FAULTS if f.name == "unknown_domain").apply(logs, good)
    real = suites.row_rules

    def broken(table: str) -> list[suites.RowRule]:
        """The real rules, with domain_known's mask passing every row."""
        return [replace(r, check=lambda tbl, ctx: np.ones(tbl.num_rows, bool)) if r.name == "domain_known"
                else r for r in real(table)]

    monkeypatch.setattr(suites, "row_rules", broken)
    disagree = "domain_known: GX success=False unexpected=1 but the mask fails 0"
    with pytest.raises(RuntimeError, match=disagree):
        validate_day(logs, BB.DT, tmp_path / "out", now=BB.NOW, config=FAST)


def test_gx_info_lines_stay_off_the_terminal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With the root logger at INFO (as under Prefect), GX adds no INFO line (e.g. temp folders)."""
    import logging

    caplog.set_level(logging.INFO)
    validate_day(BB.write_good_landing(tmp_path / "logs"), BB.DT, tmp_path / "out", now=BB.NOW)
    noise = [r.getMessage() for r in caplog.records if r.name.startswith("great_expectations")]
    assert noise == []
