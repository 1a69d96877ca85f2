"""The Amazon importer: format detection, contract output, id mapping, dedup, clear errors, atomicity."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import contract as C
from features.amazon_formats import FORMAT_5CORE, FORMAT_2014, FORMAT_2018, FORMATS
from features.amazon_synth import make_amazon_files
from features.importers import (
    MAPPINGS_DIR,
    RAW_ID,
    AmazonImportError,
    detect_format,
    domain_name_from_file,
    import_amazon,
)
from features.io import check_contract, read_table

U1, U2, U3 = "A1B2C3D4E5F6G7", "AZZZZZZZZZZZZ1", "A0000000000042"
I1, I2, I3 = "B00001ABCD", "0123456789", "B0XYZXYZ12"
DAY1, DAY2 = 1_388_620_800, 1_388_707_200  # 2014-01-02 and 2014-01-03, 00:00 UTC


def _raw(path: Path, fmt: str) -> pd.DataFrame:
    """Read a generated file independently of the importer: user, item, rating, ts."""
    if fmt == FORMAT_5CORE:
        js = pd.read_json(path, lines=True, compression="gzip")
        return js.rename(
            columns={"reviewerID": "user", "asin": "item", "overall": "rating", "unixReviewTime": "ts"}
        )
    names = ["user", "item", "rating", "ts"] if fmt == FORMAT_2014 else ["item", "user", "rating", "ts"]
    return pd.read_csv(path, header=None, names=names, dtype={"user": str, "item": str})


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_detected_and_imported(tmp_path: Path, fmt: str) -> None:
    """Generated files of each format: detected, imported with the right counts, ids, days and domains."""
    src, tgt = make_amazon_files(tmp_path / "in", seed=3, n_users=150, n_items=80, fmt=fmt)
    assert detect_format(src) == detect_format(tgt) == fmt
    summary = import_amazon(src, tgt, tmp_path / "out")
    assert (summary.source_format, summary.target_format) == (fmt, fmt)
    assert (summary.source_domain, summary.target_domain) == ("books", "movies_and_tv")
    rows = check_contract(summary.out)
    raw_s, raw_t = _raw(src, fmt), _raw(tgt, fmt)
    pairs_s = len(raw_s.drop_duplicates(["user", "item"]))
    pairs_t = len(raw_t.drop_duplicates(["user", "item"]))
    assert rows[C.BEHAVIORS] == summary.rows[C.BEHAVIORS] == pairs_s
    assert rows[C.IMPRESSIONS] == summary.rows[C.IMPRESSIONS] == pairs_t
    assert summary.duplicates_dropped == len(raw_s) + len(raw_t) - pairs_s - pairs_t > 0
    assert rows[C.ITEMS] == raw_s["item"].nunique() + raw_t["item"].nunique()
    users = pq.read_table(summary.out / MAPPINGS_DIR / "users.parquet").to_pandas()
    assert set(users[RAW_ID]) == set(raw_s["user"]) | set(raw_t["user"])
    assert sorted(users[C.USER_ID]) == list(range(1, len(users) + 1))
    assert summary.overlap_users == len(set(raw_s["user"]) & set(raw_t["user"])) > 0
    dom = read_table(summary.out, C.DOMAINS).to_pandas()
    assert dict(zip(dom[C.DOMAIN], dom[C.ROLE], strict=True)) == {
        "books": "source",
        "movies_and_tv": "target",
    }
    assert set(dom[C.TASK]) == {C.TASK_RATING}
    beh = read_table(summary.out, C.BEHAVIORS).to_pandas()
    assert set(beh[C.BEHAVIOR]) == {"rate"} and beh[C.VALUE].between(1, 5).all()
    days = {p.dt for p in C.list_partitions(summary.out, C.IMPRESSIONS)}
    imp = read_table(summary.out, C.IMPRESSIONS).to_pandas()
    assert days == set(imp[C.EVENT_TIME].dt.strftime("%Y-%m-%d"))
    assert imp[C.REQUEST_ID].is_unique


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    """Generating and importing twice gives identical files."""
    digests = []
    for k in range(2):
        src, tgt = make_amazon_files(tmp_path / f"in{k}", seed=5, n_users=60, n_items=40, fmt=FORMAT_5CORE)
        out = import_amazon(src, tgt, tmp_path / f"out{k}").out
        files = sorted(p for p in out.rglob("*") if p.is_file())
        digests.append(
            [hashlib.sha256(src.read_bytes()).hexdigest()]
            + [(str(p.relative_to(out)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]
        )
    assert digests[0] == digests[1]


def _csv(path: Path, rows: list[tuple]) -> Path:
    """Write headerless CSV rows."""
    path.write_text("".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def test_dedup_keeps_latest_and_users_share_ids(tmp_path: Path) -> None:
    """A re-rated (user, item) keeps the latest rating; a user in both files gets one id; 2014 vs 2018."""
    src = _csv(
        tmp_path / "ratings_Books.csv",  # 2014: user,item,rating,timestamp; the later rating comes first
        [(U1, I1, 5.0, DAY2 + 60), (U1, I1, 2.0, DAY1 + 60), (U2, I2, 4.0, DAY1 + 10)],
    )
    tgt = _csv(tmp_path / "CDs_and_Vinyl.csv", [(I3, U1, 3.0, DAY1 + 5), (I3, U3, 1.0, DAY2 + 7)])  # 2018
    summary = import_amazon(src, tgt, tmp_path / "out")
    assert (summary.source_format, summary.target_format) == (FORMAT_2014, FORMAT_2018)
    assert summary.target_domain == "cds_and_vinyl" and summary.duplicates_dropped == 1
    users = pq.read_table(tmp_path / "out" / MAPPINGS_DIR / "users.parquet").to_pandas()
    uid = dict(zip(users[RAW_ID], users[C.USER_ID], strict=True))
    beh = read_table(tmp_path / "out", C.BEHAVIORS).to_pandas()
    kept = beh[beh[C.USER_ID] == uid[U1]]
    assert list(kept[C.VALUE]) == [5.0]
    assert kept[C.EVENT_TIME].dt.strftime("%Y-%m-%d").item() == "2014-01-03"
    imp = read_table(tmp_path / "out", C.IMPRESSIONS).to_pandas()
    assert set(imp[C.USER_ID]) == {uid[U1], uid[U3]} and summary.overlap_users == 1
    assert C.list_days(tmp_path / "out", C.IMPRESSIONS) == ["2014-01-02", "2014-01-03"]


def test_gzipped_json_lines_with_extra_fields(tmp_path: Path) -> None:
    """5-core JSON lines (gz) with extra/nested fields import; their order does not matter."""
    path = tmp_path / "Movies_and_TV_5.json.gz"
    recs = [
        {
            "overall": 4.0,
            "verified": True,
            "reviewerID": U1,
            "asin": I1,
            "unixReviewTime": DAY1,
            "style": {"a": 1},
        },
        {"reviewerID": U2, "asin": I2, "overall": 2.0, "unixReviewTime": DAY2, "reviewText": "meh"},
    ]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in recs) + "\n")
    src = _csv(tmp_path / "ratings_Books.csv", [(U1, I3, 5.0, DAY1)])
    summary = import_amazon(src, path, tmp_path / "out")
    assert summary.target_format == FORMAT_5CORE and summary.rows[C.IMPRESSIONS] == 2
    labels = read_table(tmp_path / "out", C.IMPRESSIONS).column(C.LABEL).to_pylist()
    assert sorted(labels) == [2.0, 4.0]


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Broken inputs and the phrase their error must contain."""
    numeric = _csv(tmp / "numeric.csv", [(i, 100 + i, 4.0, DAY1) for i in range(20)])
    mixed = _csv(tmp / "mixed.csv", [(U1, I1, 4.0, DAY1), (I2, U2, 3.0, DAY1)])
    three = _csv(tmp / "three.csv", [(U1, I1, 4.0)])
    rating = _csv(tmp / "rating.csv", [(U1, I1, "five", DAY1)])
    stars = _csv(tmp / "stars.csv", [(U1, I1, 7.0, DAY1)])
    stamp = _csv(tmp / "stamp.csv", [(U1, I1, 4.0, "yesterday")])
    nofield = tmp / "nofield.json"
    nofield.write_text(json.dumps({"reviewerID": U1, "asin": I1, "unixReviewTime": DAY1}) + "\n")
    broken = tmp / "broken.json"
    broken.write_text('{"reviewerID": "A1", "asin": \n')
    empty = tmp / "empty.csv"
    empty.write_text("")
    binary = tmp / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    return {
        "ambiguous ids": (numeric, "cannot tell the CSV column order"),
        "mixed column order": (mixed, "cannot tell the CSV column order"),
        "three columns": (three, "not a 4-column ratings CSV"),
        "rating not a number": (rating, "rating (3rd) column is not double"),
        "rating out of range": (stars, "outside [1.0, 5.0]"),
        "timestamp not a number": (stamp, "timestamp (4th) column is not int64"),
        "json missing field": (nofield, "missing field 'overall'"),
        "json broken": (broken, "unreadable 5-core JSON"),
        "empty file": (empty, "empty file"),
        "binary file": (binary, "ratings CSV"),
        "no such file": (tmp / "absent.csv", "no such file"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "ambiguous ids",
        "mixed column order",
        "three columns",
        "rating not a number",
        "rating out of range",
        "timestamp not a number",
        "json missing field",
        "json broken",
        "empty file",
        "binary file",
        "no such file",
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_written(tmp_path: Path, case: str) -> None:
    """Each broken target file: AmazonImportError naming the file and the problem, nothing at out."""
    path, phrase = _bad_files(tmp_path)[case]
    src = _csv(tmp_path / "ratings_Books.csv", [(U1, I1, 5.0, DAY1)])
    with pytest.raises(AmazonImportError) as err:
        import_amazon(src, path, tmp_path / "out")
    assert str(path) in str(err.value) and phrase in str(err.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_cli_import_exit_codes(tmp_path: Path) -> None:
    """`dacdr import amazon`: 0 and a summary on success, non-zero and the message on error, no output."""
    from dacdr.cli import app

    src, tgt = make_amazon_files(tmp_path / "in", seed=1, n_users=40, n_items=30, fmt=FORMAT_2018)
    runner = CliRunner()
    ok = runner.invoke(
        app, ["import", "amazon", "--source", str(src), "--target", str(tgt), "--out", str(tmp_path / "o")]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["target_domain"] == "movies_and_tv"
    bad = _csv(tmp_path / "numeric.csv", [(i, i, 4.0, DAY1) for i in range(5)])
    res = runner.invoke(
        app, ["import", "amazon", "--source", str(src), "--target", str(bad), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code != 0
    assert "cannot tell the CSV column order" in res.output and str(bad) in res.output
    assert not (tmp_path / "x").exists()


def test_domain_names_from_file_names() -> None:
    """File names of the public dumps become valid domain names; clashes are refused."""
    assert domain_name_from_file("ratings_Movies_and_TV.csv") == "movies_and_tv"
    assert domain_name_from_file("/x/Books_5.json.gz") == "books"
    assert domain_name_from_file("CDs & Vinyl.csv") == "cds_vinyl"
    assert domain_name_from_file("2018-Books.csv") == "d_2018_books"
    with pytest.raises(AmazonImportError, match="domain name"):
        import_amazon(Path("a/Books.csv"), Path("b/ratings_Books.csv"), Path("out"))


def test_amazon_sample_cli_writes_importable_deterministic_files(tmp_path: Path) -> None:
    """`dacdr import amazon-sample`: a pair the importer reads; same seed, same bytes; bad format -> 2."""
    from dacdr.cli import app

    runner = CliRunner()
    for name in ("a", "b"):
        res = runner.invoke(app, ["import", "amazon-sample", "--out", str(tmp_path / name), "--seed", "4",
                                  "--users", "50", "--items", "20", "--format", FORMAT_2018])
        assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 2
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    a = tmp_path / "a"
    summary = import_amazon(a / "Books.csv", a / "Movies_and_TV.csv", tmp_path / "z")
    assert summary.overlap_users > 0
    bad = runner.invoke(app, ["import", "amazon-sample", "--out", str(tmp_path / "c"), "--format", "csv"])
    assert bad.exit_code == 2 and "unknown format" in bad.output


def test_format_flag_reads_numeric_ids_in_2014_order(tmp_path: Path) -> None:
    """Numeric ids cannot be told apart: detection fails naming --format; --format 2014 / 2018 decide."""
    from dacdr.cli import app

    rows = [(11, 901, 5.0, DAY1), (12, 902, 3.0, DAY2), (11, 902, 4.0, DAY2 + 5)]
    src = _csv(tmp_path / "ratings_Books.csv", rows)  # 2014 order: user,item,rating,ts
    tgt = _csv(tmp_path / "ratings_CDs.csv", [(11, 903, 2.0, DAY1), (13, 904, 1.0, DAY2)])
    with pytest.raises(AmazonImportError, match="--format"):
        import_amazon(src, tgt, tmp_path / "detected")
    assert not (tmp_path / "detected").exists()
    runner = CliRunner()
    res = runner.invoke(app, ["import", "amazon", "--source", str(src), "--target", str(tgt), "--out",
                              str(tmp_path / "z14"), "--format", "2014"])
    assert res.exit_code == 0, res.output
    users = pq.read_table(tmp_path / "z14" / MAPPINGS_DIR / "users.parquet").to_pandas()
    items = pq.read_table(tmp_path / "z14" / MAPPINGS_DIR / "items.parquet").to_pandas()
    assert sorted(users[RAW_ID]) == ["11", "12", "13"]  # the first column became users
    assert sorted(items[RAW_ID]) == ["901", "902", "903", "904"]
    uid = dict(zip(users[RAW_ID], users[C.USER_ID], strict=True))
    beh = read_table(tmp_path / "z14", C.BEHAVIORS).to_pandas()
    assert sorted(beh.loc[beh[C.USER_ID] == uid["11"], C.VALUE]) == [4.0, 5.0]
    # the same file read in 2018 order swaps the roles: the first column becomes items
    s18 = import_amazon(src, tgt, tmp_path / "z18", fmt="ratings2018")
    assert (s18.source_format, s18.target_format) == (FORMAT_2018, FORMAT_2018)
    users18 = pq.read_table(tmp_path / "z18" / MAPPINGS_DIR / "users.parquet").to_pandas()
    assert sorted(users18[RAW_ID]) == ["901", "902", "903", "904"]
    # an unknown --format is a one-line user error (exit 2), nothing written; so is a detection failure
    bad = runner.invoke(app, ["import", "amazon", "--source", str(src), "--target", str(tgt), "--out",
                              str(tmp_path / "bad"), "--format", "2020"])
    assert bad.exit_code == 2 and "unknown format" in bad.output and "2014" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    det = runner.invoke(app, ["import", "amazon", "--source", str(src), "--target", str(tgt), "--out",
                              str(tmp_path / "det")])
    assert det.exit_code == 2 and "--format" in det.output


def test_format_flag_overrides_detection_of_a_json_file(tmp_path: Path) -> None:
    """--format 2014 on 5-core JSON lines is read as CSV and fails clearly, naming the file."""
    src, tgt = make_amazon_files(tmp_path / "in", seed=2, n_users=30, n_items=20, fmt=FORMAT_5CORE)
    assert detect_format(src) == FORMAT_5CORE
    with pytest.raises(AmazonImportError, match=src.name):
        import_amazon(src, tgt, tmp_path / "out", fmt="2014")
    assert import_amazon(src, tgt, tmp_path / "ok", fmt="5core").source_format == FORMAT_5CORE


def test_importer_and_generator_import_no_circle() -> None:
    """features.importers and features.amazon_synth both sit on features.amazon_formats, not on each other."""
    import ast

    import features.amazon_synth as synth
    import features.importers as imp

    for mod, other in ((imp, "features.amazon_synth"), (synth, "features.importers")):
        tree = ast.parse(Path(mod.__file__).read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert other not in names, f"{mod.__name__} imports {other}"
