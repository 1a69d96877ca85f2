"""Readers accept contract-valid data (CSV, int32 ids, naive timestamps); bad data names file + problem."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import contract as C
from features.io import check_contract, read_table

DT = "2026-09-01"


def _frames() -> dict[str, pa.Table]:
    """A small valid zone: 2 impressions, 2 behaviours, 2 items, 2 domains (naive times, int32 ids)."""
    times = pa.array([datetime(2026, 9, 1, 8, 0), datetime(2026, 9, 1, 23, 59, 59)], pa.timestamp("ms"))
    return {
        C.IMPRESSIONS: pa.table(
            {
                C.EVENT_TIME: times,
                C.REQUEST_ID: ["r1", "r2"],
                C.DOMAIN: ["shop_feed", "shop_feed"],
                C.USER_ID: pa.array([1, 2], pa.int32()),
                C.ITEM_ID: pa.array([10, 11], pa.int32()),
                C.LABEL: pa.array([0, 1], pa.int8()),
            }
        ),
        C.BEHAVIORS: pa.table(
            {
                C.EVENT_TIME: times,
                C.DOMAIN: ["central", "central"],
                C.USER_ID: pa.array([1, 3], pa.int32()),
                C.ITEM_ID: [10, 11],
                C.BEHAVIOR: ["browse", "purchase"],
                C.VALUE: pa.array([None, 9.5], pa.float64()),
            }
        ),
        C.ITEMS: pa.table(
            {
                C.ITEM_ID: pa.array([10, 11], pa.int32()),
                C.CATEGORY_ID: [1, None],
                C.BRAND_ID: pa.array([None, None], pa.int64()),
                C.SHOP_ID: [5, 6],
                C.PRICE: [1.5, None],
            }
        ),
        C.DOMAINS: pa.table(
            {
                C.DOMAIN: ["central", "shop_feed"],
                C.ROLE: [C.ROLE_SOURCE, C.ROLE_TARGET],
                C.TASK: [C.TASK_CTR, C.TASK_CTR],
                "page_type": ["home", "feed"],
                "slot": pa.array([1, 2], pa.int32()),  # a non-string domain feature is read as text
            }
        ),
    }


def _write_zone(root: Path, frames: dict[str, pa.Table]) -> Path:
    """Write frames as parquet: event tables partitioned by day, dimensions unpartitioned."""
    for table, tbl in frames.items():
        folder = C.partition_dir(root, table, DT) if table in C.EVENT_TABLES else root / table
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(tbl, folder / "part-0.parquet")
    return root


@pytest.fixture
def zone(tmp_path: Path) -> Path:
    """A valid parquet zone."""
    return _write_zone(tmp_path / "zone", _frames())


def test_valid_zone_reads_with_contract_types(zone: Path) -> None:
    """int32 ids, int labels and naive ms timestamps come back as the contract's types, times as UTC."""
    assert check_contract(zone) == {C.IMPRESSIONS: 2, C.BEHAVIORS: 2, C.ITEMS: 2, C.DOMAINS: 2}
    imp = read_table(zone, C.IMPRESSIONS)
    assert imp.schema == C.SCHEMAS[C.IMPRESSIONS]
    assert imp.column(C.EVENT_TIME).to_pylist()[0].isoformat() == "2026-09-01T08:00:00+00:00"
    dom = read_table(zone, C.DOMAINS)
    assert dom.column("slot").type == pa.string() and dom.column("slot").to_pylist() == ["1", "2"]
    assert read_table(zone, C.ITEMS).column(C.BRAND_ID).null_count == 2


def test_csv_zone_is_accepted(tmp_path: Path) -> None:
    """CSV files with naive and offset timestamps (and a header) read like parquet."""
    root = tmp_path / "csv"
    part = C.partition_dir(root, C.IMPRESSIONS, DT)
    part.mkdir(parents=True)
    (part / "a.csv").write_text(
        "event_time,request_id,domain,user_id,item_id,label\n"
        "2026-09-01 08:00:00,r1,shop_feed,1,10,0\n"
        "2026-09-01T10:00:00+02:00,r2,shop_feed,2,11,1\n"
    )
    frames = _frames()
    for table in (C.BEHAVIORS, C.ITEMS, C.DOMAINS):
        _write_zone(root, {table: frames[table]})
    (root / C.DOMAINS / "part-0.parquet").unlink()
    (root / C.DOMAINS / "domains.csv").write_text(
        "domain,role,task,page_type\ncentral,source,ctr,home\nshop_feed,target,ctr,feed\n"
    )
    assert check_contract(root)[C.IMPRESSIONS] == 2
    imp = read_table(root, C.IMPRESSIONS)
    times = [t.isoformat() for t in imp.column(C.EVENT_TIME).to_pylist()]
    assert times == ["2026-09-01T08:00:00+00:00", "2026-09-01T08:00:00+00:00"]
    assert imp.column(C.USER_ID).type == pa.int64()
    assert read_table(root, C.DOMAINS).column("page_type").to_pylist() == ["home", "feed"]


def _set(table: str, column: str, values: pa.Array | list) -> Callable[[dict], None]:
    """An edit replacing one column of one table."""

    def edit(frames: dict[str, pa.Table]) -> None:
        """Apply the replacement."""
        tbl = frames[table]
        frames[table] = tbl.set_column(tbl.column_names.index(column), column, pa.array(values))

    return edit


def _drop(table: str, column: str) -> Callable[[dict], None]:
    """An edit dropping one column."""

    def edit(frames: dict[str, pa.Table]) -> None:
        """Apply the drop."""
        frames[table] = frames[table].drop_columns([column])

    return edit


BAD = {
    "missing column": (_drop(C.IMPRESSIONS, C.LABEL), C.IMPRESSIONS, "missing column"),
    "string user id": (
        _set(C.BEHAVIORS, C.USER_ID, ["u1", "u2"]),
        C.BEHAVIORS,
        "behaviors.user_id has type string",
    ),
    "null key": (_set(C.IMPRESSIONS, C.REQUEST_ID, ["r1", None]), C.IMPRESSIONS, "request_id has 1 null"),
    "unknown behavior": (_set(C.BEHAVIORS, C.BEHAVIOR, ["browse", "like"]), C.BEHAVIORS, "not in"),
    "bad domain name": (
        _set(C.BEHAVIORS, C.DOMAIN, ["central", "Central Page"]),
        C.BEHAVIORS,
        "not matching",
    ),
    "outside partition": (
        _set(C.IMPRESSIONS, C.EVENT_TIME, pa.array([datetime(2026, 9, 1), datetime(2026, 9, 2)])),
        C.IMPRESSIONS,
        "outside its partition dt=2026-09-01",
    ),
    "unknown role": (_set(C.DOMAINS, C.ROLE, ["source", "sink"]), C.DOMAINS, "domains.role not in"),
    "ctr label not 0/1": (_set(C.IMPRESSIONS, C.LABEL, [0.0, 0.5]), C.IMPRESSIONS, "must be 0 or 1"),
    "domain not listed": (
        _set(C.IMPRESSIONS, C.DOMAIN, ["shop_feed", "other"]),
        C.IMPRESSIONS,
        "not in the domains",
    ),
    "impression in source": (
        _set(C.IMPRESSIONS, C.DOMAIN, ["central", "central"]),
        C.IMPRESSIONS,
        "role != 'target'",
    ),
    "duplicate domain": (_set(C.DOMAINS, C.DOMAIN, ["central", "central"]), C.DOMAINS, "more than once"),
    "unknown item": (_set(C.IMPRESSIONS, C.ITEM_ID, [10, 99]), C.IMPRESSIONS, "missing from the items"),
    "duplicate item": (_set(C.ITEMS, C.ITEM_ID, [10, 10]), C.ITEMS, "not unique"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_zone_is_rejected_naming_file_and_problem(tmp_path: Path, case: str) -> None:
    """Each contract violation raises ContractError naming the table's file/folder and the problem."""
    edit, table, problem = BAD[case]
    frames = _frames()
    edit(frames)
    root = _write_zone(tmp_path / "bad", frames)
    with pytest.raises(C.ContractError) as err:
        check_contract(root)
    message = str(err.value)
    assert problem in message
    assert str(root / table) in message


def test_unreadable_and_missing_files(tmp_path: Path, zone: Path) -> None:
    """A corrupt parquet file and a missing table are named in the error."""
    bad = C.partition_dir(zone, C.BEHAVIORS, DT) / "part-0.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(C.ContractError, match=f"{bad}: unreadable behaviors file"):
        check_contract(zone)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(C.ContractError, match="no parquet or csv files for table 'impressions'"):
        check_contract(empty)


def test_csv_with_bad_values_names_the_file(tmp_path: Path) -> None:
    """A CSV timestamp or id that does not parse is reported with the file path."""
    part = C.partition_dir(tmp_path, C.IMPRESSIONS, DT)
    part.mkdir(parents=True)
    bad_time = part / "a.csv"
    bad_time.write_text("event_time,request_id,domain,user_id,item_id,label\nyesterday,r1,d,1,10,0\n")
    with pytest.raises(C.ContractError, match=f"{bad_time}.*event_time"):
        read_table(tmp_path, C.IMPRESSIONS)
    bad_time.write_text(
        "event_time,request_id,domain,user_id,item_id,label\n2026-09-01 01:00:00,r1,d,x1,10,0\n"
    )
    with pytest.raises(C.ContractError, match=f"{bad_time}: impressions.user_id has type string"):
        read_table(tmp_path, C.IMPRESSIONS)


def test_rating_labels_checked_against_their_range(tmp_path: Path) -> None:
    """A rating domain accepts 1-5 labels and rejects 0."""
    frames = _frames()
    frames[C.DOMAINS] = frames[C.DOMAINS].set_column(2, C.TASK, pa.array([C.TASK_RATING, C.TASK_RATING]))
    _set(C.IMPRESSIONS, C.LABEL, [1.0, 5.0])(frames)
    assert check_contract(_write_zone(tmp_path / "ok", frames))[C.IMPRESSIONS] == 2
    _set(C.IMPRESSIONS, C.LABEL, [0.0, 5.0])(frames)
    with pytest.raises(C.ContractError, match=r"must lie in \[1.0, 5.0\]"):
        check_contract(_write_zone(tmp_path / "bad", frames))


def test_swap_leftovers_and_stray_files_are_not_read(zone: Path) -> None:
    """Leftovers of an interrupted partition swap (.dt=D.old.*, temp folders) and files outside any
    dt= folder are not data: reading the table without a day returns each row once."""
    from features.io import stray_files

    day = C.partition_dir(zone, C.IMPRESSIONS, DT)
    base = zone / C.IMPRESSIONS
    for leftover in (f".dt={DT}.old.0123abcd", f".dt={DT}.k2j3h4"):  # what atomic_dir leaves behind
        (base / leftover).mkdir()
        (base / leftover / "part-0.parquet").write_bytes((day / "part-0.parquet").read_bytes())
    (base / "loose.parquet").write_bytes((day / "part-0.parquet").read_bytes())
    (day / "part-1.PARQUET.gz").write_bytes(b"\x1f\x8b")
    assert read_table(zone, C.IMPRESSIONS).num_rows == 2
    assert read_table(zone, C.IMPRESSIONS, dt=DT).num_rows == 2
    assert check_contract(zone)[C.IMPRESSIONS] == 2
    assert stray_files(zone, C.IMPRESSIONS) == [day / "part-1.PARQUET.gz", base / "loose.parquet"]
    assert stray_files(zone, C.IMPRESSIONS, "2026-09-02") == [base / "loose.parquet"]
