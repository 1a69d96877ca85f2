"""Input faults of the data stage: `--out` never deletes what dacdr did not make, naive CSV times are
UTC (never the previous row's offset), the landing zone refuses symbolic links and never echoes
file content, validation leaves no temp folders, and request_ids are unique within a day."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dacdr.cli import app
from features import contract as C
from features import io, landing
from features.amazon_synth import make_amazon_files
from features.validation import ValidationConfig, ValidationFailed, validate_day
from tests.data import bad_batches as BB

FAST = ValidationConfig(data_docs=False)
SECRET = "root:x:0:0:root:/root:/bin/bash"  # what a symlinked /etc/passwd would hold


def _user_folder(path: Path) -> dict[str, str]:
    """A folder that is not dacdr's (like a home directory): a file and a subfolder; returns its files."""
    (path / "photos").mkdir(parents=True)
    (path / "keep").write_text("x\n")
    (path / "photos" / "a.jpg").write_bytes(b"\xff\xd8")
    return _files(path)


def _files(path: Path) -> dict[str, str]:
    """Relative path -> content of every file under `path`."""
    return {str(p.relative_to(path)): p.read_bytes().hex() for p in sorted(path.rglob("*")) if p.is_file()}


def _commands(tmp_path: Path, out: Path) -> dict[str, list[str]]:
    """Every command that writes a folder at --out (their other inputs exist; none is read first)."""
    logs = BB.write_good_landing(tmp_path / "logs")
    src, tgt = make_amazon_files(tmp_path / "amazon", seed=0, n_users=20, n_items=10)
    return {
        "build-dataset": ["build-dataset", "--logs", str(logs), "--out", str(out)],
        "validate": ["validate", "--logs", str(logs), "--dt", BB.DT, "--out", str(out), "--no-data-docs"],
        "simulate": ["simulate", "--out", str(out)],
        "import amazon": ["import", "amazon", "--source", str(src), "--target", str(tgt), "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["build-dataset", "validate", "simulate", "import amazon"])
def test_out_refuses_a_folder_dacdr_did_not_make(tmp_path: Path, command: str) -> None:
    """`echo x > d/keep; dacdr <command> --out d` -> one error line, exit 2, d untouched."""
    out = tmp_path / "home"
    before = _user_folder(out)
    result = CliRunner().invoke(app, _commands(tmp_path, out)[command])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out") and "--force" in lines[0], lines
    assert _files(out) == before


def test_out_refuses_another_kind_of_output_and_force_replaces(tmp_path: Path) -> None:
    """A landing zone is not a dataset folder; --force is the one way to replace a foreign folder."""
    out = tmp_path / "zone"
    with io.atomic_dir(out, kind=io.LANDING_OUTPUT) as tmp:
        (tmp / "data.txt").write_text("zone\n")
    with pytest.raises(io.OutputRefused, match="holds a dacdr landing_zone output, not a dataset"):
        io.prepare_output(out, io.DATASET_OUTPUT)
    assert io.prepare_output(out, io.LANDING_OUTPUT) == out  # ours, same kind: replaced as before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert io.prepare_output(empty, io.DATASET_OUTPUT) == empty  # nothing there to lose
    assert io.prepare_output(tmp_path / "missing", io.DATASET_OUTPUT) == tmp_path / "missing"
    foreign = tmp_path / "foreign"
    _user_folder(foreign)
    with pytest.raises(io.OutputRefused, match="not made by dacdr"):
        io.prepare_output(foreign, io.DATASET_OUTPUT)
    assert io.prepare_output(foreign, io.DATASET_OUTPUT, force=True) == foreign


def test_import_twice_replaces_its_own_output(tmp_path: Path) -> None:
    """A folder the command wrote carries the marker, so the same command may replace it."""
    out = tmp_path / "zone"
    args = _commands(tmp_path, out)["import amazon"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert io.output_kind(out) == io.LANDING_OUTPUT
    (out / C.ITEMS / "stale.parquet").write_bytes(b"")  # a file of the previous output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert not (out / C.ITEMS / "stale.parquet").exists()  # replaced whole, atomically


MIXED_CSV = (
    "event_time,request_id,domain,user_id,item_id,label\n"
    "2024-03-05T10:00:00-05:00,r1,tgt_movies,1,10,0\n"
    "2024-03-05T12:00:00,r2,tgt_movies,1,11,1\n"
)


def test_naive_csv_time_is_utc_not_the_previous_rows_offset(tmp_path: Path) -> None:
    """check-logs' reader and validate read `12:00:00` after a `-05:00` row as 12:00 UTC, not 17:00."""
    logs = BB.write_good_landing(tmp_path / "logs")
    day = logs / C.IMPRESSIONS / f"dt={BB.DT}"
    (day / "part-0.parquet").unlink()
    (day / "mixed.csv").write_text(MIXED_CSV)
    want = [datetime(2024, 3, 5, 15, tzinfo=UTC), datetime(2024, 3, 5, 12, tzinfo=UTC)]
    assert io.read_table(logs, C.IMPRESSIONS).column(C.EVENT_TIME).to_pylist() == want
    now = datetime(2024, 3, 6, tzinfo=UTC)
    validate_day(logs, BB.DT, tmp_path / "out", now=now, config=FAST)
    curated = pq.read_table(tmp_path / "out" / "curated" / C.IMPRESSIONS / f"dt={BB.DT}")
    assert sorted(curated.column(C.EVENT_TIME).to_pylist()) == sorted(want)


def test_one_timestamp_parser() -> None:
    """Offsets are applied per value (Z, +hh:mm, -hhmm); naive values are UTC; garbage is flagged."""
    text = pa.array(["2024-03-05T10:00:00+02:00", "2024-03-05 10:00:00", "2024-03-05T10:00:00Z",
                     "2024-03-05T10:00:00-0130", "yesterday", None])
    times, bad = landing.parse_timestamps(text)
    base = datetime(2024, 3, 5, 10, tzinfo=UTC)
    hours = [-2, 0, 0, 1.5]
    assert times.to_pylist() == [base + timedelta(hours=h) for h in hours] + [None, None]
    assert bad.tolist() == [False, False, False, False, True, False]


def _link_impressions(logs: Path, target: Path) -> Path:
    """Replace the day's impressions file with a symbolic link to `target`."""
    day = logs / C.IMPRESSIONS / f"dt={BB.DT}"
    (day / "part-0.parquet").unlink()
    link = day / ("x.csv" if target.suffix != ".parquet" else "x.parquet")
    os.symlink(target, link)
    return link


def test_symlinked_landing_file_is_refused_and_never_read(tmp_path: Path) -> None:
    """A parquet linked from outside the zone is refused by validate and check-logs, naming the link."""
    outside = tmp_path / "elsewhere" / "part.parquet"
    outside.parent.mkdir()
    pq.write_table(BB.good_tables()[C.IMPRESSIONS], outside)
    logs = BB.write_good_landing(tmp_path / "logs")
    link = _link_impressions(logs, outside)
    with pytest.raises(ValidationFailed, match="symbolic link") as err:
        validate_day(logs, BB.DT, tmp_path / "out", config=FAST)
    assert err.value.source == str(link) and err.value.expectation == "file_readable"
    result = CliRunner().invoke(app, ["check-logs", str(logs)])
    assert result.exit_code == 1 and "symbolic link" in result.output, result.output


def test_symlinked_day_folder_is_refused(tmp_path: Path) -> None:
    """A linked dt= folder is refused too (a directory walk would skip it without a word)."""
    logs = BB.write_good_landing(tmp_path / "logs")
    day = logs / C.IMPRESSIONS / f"dt={BB.DT}"
    day.rename(tmp_path / "real_day")
    os.symlink(tmp_path / "real_day", day)
    with pytest.raises(C.ContractError, match="symbolic link to a folder"):
        io.read_table(logs, C.IMPRESSIONS)


@pytest.mark.parametrize("linked", [True, False], ids=["symlinked", "copied"])
def test_file_content_is_never_echoed(tmp_path: Path, linked: bool) -> None:
    """`ln -s /etc/passwd .../x.csv` (or a copy of it): no line of it in the report, stderr or stdout."""
    secret = tmp_path / "passwd"
    secret.write_text(f"{SECRET}\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    logs = BB.write_good_landing(tmp_path / "logs")
    if linked:
        _link_impressions(logs, secret)
    else:
        day = logs / C.IMPRESSIONS / f"dt={BB.DT}"
        (day / "part-0.parquet").unlink()
        (day / "x.csv").write_bytes(secret.read_bytes())
    out = tmp_path / "out"
    args = ["validate", "--logs", str(logs), "--dt", BB.DT, "--out", str(out), "--no-data-docs"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    report = (out / "reports" / f"dt={BB.DT}.json").read_text()
    check = CliRunner().invoke(app, ["check-logs", str(logs)])
    assert check.exit_code == 1
    for text in (result.output, report, check.output):
        assert "root:x" not in text and "daemon" not in text and "nologin" not in text, text


def test_validate_leaves_no_temp_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with Data Docs leaves nothing in the temp folder and no hidden leftovers under --out."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    logs = BB.write_good_landing(tmp_path / "logs")
    out = tmp_path / "out"
    validate_day(logs, BB.DT, out, now=BB.NOW)
    assert list(tmp.iterdir()) == []
    hidden = [p for p in out.rglob(".*") if p.name != io.MARKER]
    assert hidden == []


def _next_day(tbl: pa.Table) -> pa.Table:
    """The same rows one day later."""
    times = pc.add(tbl.column(C.EVENT_TIME), pa.scalar(timedelta(days=1)))
    idx = tbl.column_names.index(C.EVENT_TIME)
    return tbl.set_column(idx, tbl.schema.field(idx), times)


def test_request_ids_are_unique_within_a_day_only(tmp_path: Path) -> None:
    """A duplicate delivery has the original's event_time, so it lands in the original's day: the
    next day's partition holding a copy fails event_time_in_partition; a request_id reused with a
    new time on a later day is a new impression and is accepted (docs/data-quality.md)."""
    good = BB.good_tables()
    imp = good[C.IMPRESSIONS]
    logs = BB.write_good_landing(tmp_path / "logs")
    next_dt = (datetime.fromisoformat(BB.DT) + timedelta(days=1)).date().isoformat()
    copy = pa.concat_tables([_next_day(imp), imp.slice(0, 3)])  # same request_ids; 3 copies of day-1 rows
    BB.write_landing(logs, {C.IMPRESSIONS: copy, C.BEHAVIORS: _next_day(good[C.BEHAVIORS])}, next_dt)
    out = tmp_path / "out"
    now = BB.NOW + timedelta(days=2)
    validate_day(logs, BB.DT, out, now=now, config=FAST)
    summary = validate_day(logs, next_dt, out, now=now, config=FAST)
    assert summary.tables[C.IMPRESSIONS].accepted == imp.num_rows
    assert summary.tables[C.IMPRESSIONS].failures == {"event_time_in_partition": 3}
    reports = json.loads((out / "reports" / f"dt={next_dt}.json").read_text())
    assert reports["status"] == "ok"
