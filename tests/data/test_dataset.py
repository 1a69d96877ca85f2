"""features.dataset: training table on a hand-made zone and on tiny; splits, cold flag, determinism, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import contract as C
from features import io
from features.dataset import SPLITS, build_dataset, build_training_table, split_by_time
from features.sequences import RESERVED_ID, sequence_columns

DAY_US = 86_400_000_000
T0 = int(pd.Timestamp("2026-05-01", tz="UTC").value // 1000)


def _ts(us: list[int]) -> pa.Array:
    """Epoch microseconds as contract timestamps."""
    return pa.array(us, pa.int64()).cast(C.TIMESTAMP)


def _write(root: Path, table: str, tbl: pa.Table, dt: str | None = None) -> None:
    """Write one file of a landing-zone table."""
    folder = C.partition_dir(root, table, dt) if dt else root / table
    io.write_table(tbl, folder / "part-0.parquet")


def _day(us: int) -> str:
    """The dt= partition of an epoch-us time."""
    return str(np.datetime64(us // DAY_US, "D"))


def _write_events(root: Path, table: str, tbl: pa.Table) -> None:
    """Write an event table partitioned by UTC day."""
    days = np.array([_day(t) for t in tbl[C.EVENT_TIME].cast(pa.int64()).to_pylist()])
    for d in sorted(set(days)):
        _write(root, table, tbl.filter(pa.array(days == d)), d)


IMP_ROWS = [
    # (day, seconds, request, domain, user, item, label)
    (0, 100, "r1", "tgt", 1, 10, 1.0),
    (0, 100, "r1", "tgt", 1, 11, 0.0),
    (0, 200, "s1", "src", 1, 10, 0.0),  # source-domain impression: not a training row
    (1, 50, "r2", "tgt", 2, 12, 0.0),
    (1, 50, "r2b", "tgt2", 3, 10, 1.0),
    (2, 0, "r3", "tgt", 1, 99, 0.0),  # item 99 unknown; exactly at midnight
    (3, 10, "r4", "tgt", 1, 10, 1.0),  # test day: user 1 seen in tgt before -> warm
    (3, 20, "r5", "tgt", 4, 11, 0.0),  # user 4 never seen -> cold
    (3, 30, "r6", "tgt", 3, 12, 0.0),  # user 3 seen only in tgt2 -> cold in tgt
    (3, 40, "r7", "tgt2", 3, 12, 1.0),  # ... and warm in tgt2
]


def _impressions() -> pa.Table:
    """The hand-made impressions."""
    cols = list(zip(*IMP_ROWS, strict=True))
    return pa.table(
        {
            C.EVENT_TIME: _ts(
                [T0 + d * DAY_US + s * 1_000_000 for d, s in zip(cols[0], cols[1], strict=True)]
            ),
            C.REQUEST_ID: list(cols[2]),
            C.DOMAIN: list(cols[3]),
            C.USER_ID: pa.array(cols[4], pa.int64()),
            C.ITEM_ID: pa.array(cols[5], pa.int64()),
            C.LABEL: pa.array(cols[6], pa.float64()),
        }
    )


def _domains(with_source: bool = True) -> pa.Table:
    """Domains: src (source), tgt and tgt2 (targets) with two domain features."""
    names = ["src", "tgt", "tgt2"] if with_source else ["tgt", "tgt2"]
    role = {"src": C.ROLE_SOURCE, "tgt": C.ROLE_TARGET, "tgt2": C.ROLE_TARGET}
    return pa.table(
        {
            C.DOMAIN: names,
            C.ROLE: [role[n] for n in names],
            C.TASK: [C.TASK_CTR] * len(names),
            "page_type": [f"{n}_page" for n in names],
            "placement": [None if n == "tgt2" else "top" for n in names],
        }
    )


def _behaviors() -> pa.Table:
    """Source behaviours of users 1 and 3, plus one target-domain behaviour that must be ignored."""
    rows = [
        (T0 + 10, "src", 1, 10, "click"),
        (T0 + DAY_US + 5, "src", 1, 11, "click"),
        (T0 + 2 * DAY_US, "src", 1, 12, "browse"),  # exactly at midnight of day 2
        (T0 + 5, "tgt", 1, 13, "click"),
        (T0 + 3 * DAY_US + 1, "src", 3, 10, "purchase"),  # on test day, after nothing
    ]
    t, dom, u, i, b = (list(x) for x in zip(*rows, strict=True))
    return pa.table(
        {
            C.EVENT_TIME: _ts(t),
            C.DOMAIN: dom,
            C.USER_ID: pa.array(u, pa.int64()),
            C.ITEM_ID: pa.array(i, pa.int64()),
            C.BEHAVIOR: b,
            C.VALUE: pa.nulls(len(t), pa.float64()),
        }
    )


def _items() -> pa.Table:
    """Items 10-13; item 12 has a null brand."""
    return pa.table(
        {
            C.ITEM_ID: pa.array([10, 11, 12, 13], pa.int64()),
            C.CATEGORY_ID: pa.array([1, 2, 3, 4], pa.int64()),
            C.BRAND_ID: pa.array([5, 6, None, 8], pa.int64()),
            C.SHOP_ID: pa.array([9, 9, 9, 9], pa.int64()),
            C.PRICE: pa.array([1.0, 2.0, 3.0, 4.0]),
        }
    )


@pytest.fixture
def zone(tmp_path: Path) -> Path:
    """A complete hand-made landing zone over 4 days."""
    root = tmp_path / "logs"
    _write_events(root, C.IMPRESSIONS, _impressions())
    _write_events(root, C.BEHAVIORS, _behaviors())
    _write(root, C.ITEMS, _items())
    _write(root, C.DOMAINS, _domains())
    return root


def test_hand_made_zone_rows_side_info_cold_sequences(zone: Path) -> None:
    """One row per target impression in (time, request, item) order; side info, cold flag, sequences right."""
    df = build_training_table(zone, max_len=5, train_end=_day(T0 + 3 * DAY_US))
    assert list(df[C.REQUEST_ID]) == ["r1", "r1", "r2", "r2b", "r3", "r4", "r5", "r6", "r7"]
    assert list(df[C.ITEM_ID][:2]) == [10, 11]
    assert (df[C.DOMAIN] != "src").all()
    r3 = df[df[C.REQUEST_ID] == "r3"].iloc[0]
    assert [r3[c] for c in C.SIDE_INFO] == [RESERVED_ID] * 3
    r2 = df[df[C.REQUEST_ID] == "r2"].iloc[0]
    assert (r2[C.CATEGORY_ID], r2[C.BRAND_ID]) == (3, RESERVED_ID)
    cold = dict(zip(df[C.REQUEST_ID], df[C.IS_COLD], strict=True))
    assert (cold["r4"], cold["r5"], cold["r6"], cold["r7"]) == (False, True, True, False)
    assert list(df[C.domain_feature_col("page_type")][:4]) == [
        "tgt_page",
        "tgt_page",
        "tgt_page",
        "tgt2_page",
    ]
    assert df[C.domain_feature_col("placement")].iloc[3] is None
    click = dict(zip(df[C.REQUEST_ID], [list(x) for x in df[C.seq_col("click", C.ITEM_ID)]], strict=True))
    browse = dict(zip(df[C.REQUEST_ID], [list(x) for x in df[C.seq_col("browse", C.ITEM_ID)]], strict=True))
    # r1 same day as the first click: nothing yet; r3 at midnight of day 2 sees day 0 and day 1 clicks,
    # not the browse exactly at that midnight; the target-domain click (item 13) never appears
    assert click["r1"] == [] and click["r3"] == [10, 11] and click["r4"] == [10, 11]
    assert browse["r3"] == [] and browse["r4"] == [12]
    assert [list(x) for x in df[C.seq_col("purchase", C.ITEM_ID)]] == [[]] * len(
        df
    )  # user 3 bought on test day
    for c in sequence_columns():
        assert df[c].isna().sum() == 0


def test_no_leakage_on_hand_made_zone(zone: Path) -> None:
    """Every sequence element time is strictly before its row's event time."""
    df = build_training_table(zone)
    _assert_no_leakage(df)


def _assert_no_leakage(df: pd.DataFrame | pa.Table) -> None:
    """All seq_*_event_time elements < the row's event_time (vectorised); some elements are checked."""
    tbl = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    row_t = tbl[C.EVENT_TIME].cast(pa.int64()).combine_chunks()
    checked = 0
    for b in C.BEHAVIOR_TYPES:
        col = tbl[C.seq_col(b, C.EVENT_TIME)].combine_chunks()
        parent = pc.list_parent_indices(col)
        flat = pc.list_flatten(col)
        assert flat.null_count == 0, b  # a null time would be skipped by the comparison below
        earlier = pc.less(flat, pc.take(row_t, parent))
        assert (pc.sum(earlier).as_py() or 0) == len(flat), b  # every element (an empty type passes)
        checked += len(flat)
    assert checked > 0, "no sequence element to check: the leakage test would pass vacuously"


def test_event_resolution_rows_see_their_own_day(zone: Path) -> None:
    """resolution="event": no leakage, every day-resolution list is a prefix-truncated subset of the
    event-resolution one (it adds the same day's earlier behaviours); a bad value is named."""
    day = pa.Table.from_pandas(build_training_table(zone), preserve_index=False)
    event = pa.Table.from_pandas(build_training_table(zone, resolution="event"), preserve_index=False)
    _assert_no_leakage(event)
    assert event.drop_columns(sequence_columns()).equals(day.drop_columns(sequence_columns()))
    more = 0
    for b in C.BEHAVIOR_TYPES:
        d = day.column(C.seq_col(b, C.EVENT_TIME)).to_pylist()
        e = event.column(C.seq_col(b, C.EVENT_TIME)).to_pylist()
        for x, y in zip(d, e, strict=True):
            assert set(x) <= set(y) or len(y) == 50  # only max_len can push older elements out
            more += len(y) > len(x)
    assert more > 0  # some rows do see same-day behaviour
    with pytest.raises(ValueError, match="resolution must be one of"):
        build_training_table(zone, resolution="hour")


def test_split_by_time_days_and_counts(zone: Path) -> None:
    """Last day test, the day before validation, the rest train; counts add up; too few days is an error."""
    df = build_training_table(zone)
    parts = split_by_time(df, test_days=1, val_days=1)
    assert [len(parts[k]) for k in SPLITS] == [4, 1, 4]
    assert sum(len(p) for p in parts.values()) == len(df)
    day = {k: sorted({_day(int(t.value // 1000)) for t in parts[k][C.EVENT_TIME]}) for k in SPLITS}
    assert day == {
        "train": ["2026-05-01", "2026-05-02"],
        "validation": ["2026-05-03"],
        "test": ["2026-05-04"],
    }
    shuffled = split_by_time(df.sample(frac=1.0, random_state=0), test_days=1, val_days=1)
    for k in SPLITS:  # unordered input takes the mask path: same rows per split
        assert sorted(shuffled[k][C.REQUEST_ID]) == sorted(parts[k][C.REQUEST_ID])
    two = split_by_time(df, test_days=2, val_days=0)
    assert (len(two["validation"]), len(two["test"])) == (0, 5)
    with pytest.raises(ValueError, match="needs at least 5"):
        split_by_time(df, test_days=2, val_days=2)


def test_burn_in_days_leave_training_only(zone: Path) -> None:
    """burn_in_days=1 drops the first day from train only; ordered and shuffled input agree; bounds."""
    df = build_training_table(zone)
    base = split_by_time(df, test_days=1, val_days=1)
    burned = split_by_time(df, test_days=1, val_days=1, burn_in_days=1)
    day = {k: sorted({_day(int(t.value // 1000)) for t in burned[k][C.EVENT_TIME]}) for k in SPLITS}
    assert day["train"] == ["2026-05-02"]
    first_day = base["train"][C.EVENT_TIME].map(lambda t: _day(int(t.value // 1000))) == "2026-05-01"
    assert 0 < len(burned["train"]) == len(base["train"]) - int(first_day.sum())
    for k in ("validation", "test"):
        assert sorted(burned[k][C.REQUEST_ID]) == sorted(base[k][C.REQUEST_ID])
    shuffled = split_by_time(df.sample(frac=1.0, random_state=1), test_days=1, val_days=1, burn_in_days=1)
    assert sorted(shuffled["train"][C.REQUEST_ID]) == sorted(burned["train"][C.REQUEST_ID])
    with pytest.raises(ValueError, match="burn-in"):
        split_by_time(df, test_days=1, val_days=1, burn_in_days=2)  # 4 days: no training day left
    with pytest.raises(ValueError, match="burn_in_days >= 0"):
        split_by_time(df, burn_in_days=-1)


def test_build_dataset_writes_splits_and_manifest(zone: Path, tmp_path: Path) -> None:
    """Files + manifest; the same input gives the same bytes twice."""
    a = build_dataset(zone, tmp_path / "a", max_len=3)
    b = build_dataset(zone, tmp_path / "b", max_len=3)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted([*(f"{s}.parquet" for s in SPLITS), "manifest.json", io.MARKER])
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    m = json.loads((a / "manifest.json").read_text())
    assert m["rows"] == {"train": 4, "validation": 1, "test": 4}
    assert m["days"]["test"] == ["2026-05-04"] and m["max_len"] == 3
    assert m["domain_features"] == ["page_type", "placement"]
    assert m["domains"]["src"] == {"role": C.ROLE_SOURCE, "task": C.TASK_CTR}
    assert m["label_rate"]["test"] == pytest.approx(0.5)
    assert m["behavior_types"] == list(C.BEHAVIOR_TYPES)
    test = pq.read_table(a / "test.parquet")
    assert test.schema.field(C.seq_col("click", C.ITEM_ID)).type == pa.list_(pa.int64())
    assert pd.read_parquet(a / "train.parquet")[C.IS_COLD].dtype == bool


def test_errors_name_the_problem(zone: Path, tmp_path: Path) -> None:
    """Missing table, no target domain, too few days, unknown impression domain."""
    import shutil

    no_beh = tmp_path / "no_beh"
    shutil.copytree(zone, no_beh)
    shutil.rmtree(no_beh / C.BEHAVIORS)
    with pytest.raises(C.ContractError, match="behaviors.*base-logs"):
        build_training_table(no_beh)
    with pytest.raises(ValueError, match="span 4 day"):
        build_dataset(zone, tmp_path / "x", test_days=2, val_days=2)
    assert not (tmp_path / "x").exists()
    no_tgt = tmp_path / "no_tgt"
    shutil.copytree(zone, no_tgt)
    dom = _domains().filter(pa.array([True, False, False]))
    _write(no_tgt, C.DOMAINS, dom)
    with pytest.raises(C.ContractError, match="not in the domains table"):
        build_training_table(no_tgt)
    imps = _impressions().filter(pc.equal(_impressions()[C.DOMAIN], "src"))
    shutil.rmtree(no_tgt / C.IMPRESSIONS)
    _write_events(no_tgt, C.IMPRESSIONS, imps)
    with pytest.raises(C.ContractError, match="role='target'"):
        build_training_table(no_tgt)


def test_onboarding_zone_reads_base_logs(zone: Path, tmp_path: Path) -> None:
    """A zone with only impressions + its domain row builds with behaviours/items/source from base_logs."""
    onboard = tmp_path / "_onboard" / "newdom"
    imps = _impressions().filter(pc.equal(_impressions()[C.DOMAIN], "tgt"))
    imps = imps.set_column(2, C.DOMAIN, pa.array(["newdom"] * imps.num_rows))
    _write_events(onboard, C.IMPRESSIONS, imps)
    new_dom = pa.table(
        {C.DOMAIN: ["newdom"], C.ROLE: [C.ROLE_TARGET], C.TASK: [C.TASK_CTR], "page_type": ["new"]}
    )
    _write(onboard, C.DOMAINS, new_dom)
    with pytest.raises(C.ContractError, match="base-logs"):
        build_training_table(onboard)
    df = build_training_table(onboard, base_logs=zone)
    assert len(df) == imps.num_rows
    assert set(df[C.DOMAIN]) == {"newdom"}
    r4 = df[C.REQUEST_ID] == "r4"
    assert [list(x) for x in df.loc[r4, C.seq_col("click", C.ITEM_ID)]] == [[10, 11]]
    out = build_dataset(onboard, tmp_path / "ds", base_logs=zone)
    m = json.loads((out / "manifest.json").read_text())
    assert m["domains"] == {
        "src": {"role": C.ROLE_SOURCE, "task": C.TASK_CTR},
        "newdom": {"role": C.ROLE_TARGET, "task": C.TASK_CTR},
    }


def test_cli_build_dataset(zone: Path, tmp_path: Path) -> None:
    """`dacdr build-dataset` writes the splits; bad input exits non-zero with the reason."""
    from dacdr.cli import app

    runner = CliRunner()
    out = tmp_path / "cli_ds"
    res = runner.invoke(app, ["build-dataset", "--logs", str(zone), "--out", str(out), "--max-len", "2"])
    assert res.exit_code == 0, res.output
    assert "train=4" in res.output
    assert json.loads((out / "manifest.json").read_text())["max_len"] == 2
    res = runner.invoke(app, ["build-dataset", "--logs", str(zone), "--out", str(out), "--test-days", "4"])
    assert res.exit_code == 2
    assert "need at least 6" in res.output


# ---------------------------------------------------------------- on the shared tiny preset


def test_tiny_dataset_rows_splits_leakage(tiny_logs: Path, tiny_dataset: Path) -> None:
    """tiny: rows == target impressions, splits add up by day, no sequence element from the future."""
    m = json.loads((tiny_dataset / "manifest.json").read_text())
    dom = io.read_table(tiny_logs, C.DOMAINS)
    targets = dom.filter(pc.equal(dom[C.ROLE], C.ROLE_TARGET))[C.DOMAIN]
    imps = io.read_table(tiny_logs, C.IMPRESSIONS)
    n_target = imps.filter(pc.is_in(imps[C.DOMAIN], targets)).num_rows
    cols = [C.EVENT_TIME, C.IS_COLD, C.seq_col("browse", C.ITEM_ID)]
    frames = {s: pd.read_parquet(tiny_dataset / f"{s}.parquet", columns=cols) for s in SPLITS}
    assert sum(len(f) for f in frames.values()) == n_target == sum(m["rows"].values())
    all_days = C.list_days(tiny_logs)
    assert m["days"]["test"] == all_days[-1:] and m["days"]["validation"] == all_days[-2:-1]
    assert m["days"]["train"] == all_days[:-2]
    for s, f in frames.items():
        days = f[C.EVENT_TIME].dt.strftime("%Y-%m-%d").unique().tolist()
        assert sorted(days) == m["days"][s]
        _assert_no_leakage(pq.read_table(tiny_dataset / f"{s}.parquet"))
    assert frames["test"][C.IS_COLD].any() and not frames["train"][C.IS_COLD].any()
    lens = frames["train"][C.seq_col("browse", C.ITEM_ID)].map(len)
    assert lens.max() == m["max_len"] and (lens == 0).any()


def test_tiny_reserved_value_never_a_real_id(tiny_logs: Path, tiny_dataset: Path) -> None:
    """-1 is not a real id in tiny; in the dataset it appears only where side info is truly unknown."""
    items = io.read_table(tiny_logs, C.ITEMS)
    for c in (C.ITEM_ID, *C.SIDE_INFO):
        assert not pc.any(pc.equal(items[c], RESERVED_ID)).as_py()
    test = pq.read_table(tiny_dataset / "test.parquet")
    known = items[C.ITEM_ID].to_numpy()
    side_null = items.filter(pc.is_null(items[C.CATEGORY_ID]))[C.ITEM_ID].to_numpy()
    ids = pc.list_flatten(test[C.seq_col("click", C.ITEM_ID)]).to_numpy()
    cats = pc.list_flatten(test[C.seq_col("click", C.CATEGORY_ID)]).to_numpy()
    assert len(ids) > 0 and not (ids == RESERVED_ID).any()
    unknown = ~np.isin(ids, known) | np.isin(ids, side_null)
    assert np.array_equal(cats == RESERVED_ID, unknown)


def test_tiny_onboarding_zone(tiny_logs: Path, tmp_path: Path) -> None:
    """The simulator's onboarding zone (impressions + domains only) builds against the main zone."""
    (onboard,) = sorted((tiny_logs / "_onboard").iterdir())
    imps = io.read_table(onboard, C.IMPRESSIONS)
    out = build_dataset(onboard, tmp_path / "onboard_ds", base_logs=tiny_logs)
    m = json.loads((out / "manifest.json").read_text())
    assert sum(m["rows"].values()) == imps.num_rows
    assert m["target_domains"] == [onboard.name]
    roles = {d: info["role"] for d, info in m["domains"].items()}
    assert roles[onboard.name] == C.ROLE_TARGET and C.ROLE_SOURCE in roles.values()
    test = pq.read_table(out / "test.parquet")
    assert pc.sum(pc.list_value_length(test[C.seq_col("browse", C.ITEM_ID)])).as_py() > 0
    _assert_no_leakage(test)


def test_history_at_attaches_one_time_to_every_row(zone: Path) -> None:
    """history_at: every row gets the snapshot as of that time (the user's whole history at the end),
    equal to the as-of sequences of the user's latest row when that row comes after all behaviour."""
    import pandas as pd

    as_of = build_training_table(zone)
    late = pd.Timestamp("2026-06-01", tz="UTC").to_pydatetime()
    full = build_training_table(zone, history_at=late)
    assert full.drop(columns=sequence_columns()).equals(as_of.drop(columns=sequence_columns()))
    col = C.seq_col("browse", C.ITEM_ID)
    lens = {k: f[col].map(len).groupby(f[C.USER_ID]).agg(["min", "max"])
            for k, f in (("a", as_of), ("f", full))}
    assert (lens["f"]["min"] == lens["f"]["max"]).all()  # one history per user, whatever the row's time
    assert (lens["f"]["max"] >= lens["a"]["max"]).all() and (lens["f"]["max"] > lens["a"]["min"]).any()
    # the zone's last day has impressions and behaviour: a snapshot as of a time after it holds more
    # than any row of that day can see, so as-of and full differ somewhere
    assert not full[col].map(tuple).equals(as_of[col].map(tuple))
