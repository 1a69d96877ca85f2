"""features.sequences: snapshots + as-of attach against a brute-force reference, edge times, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features import contract as C
from features.sequences import (
    RESERVED_ID,
    SEQUENCE_TYPE,
    attach_sequences,
    empty_sequences,
    event_time_sequences,
    normalize_sequences,
    sequence_columns,
    sequence_snapshots,
    snapshot_schema,
)

DAY_US = 86_400_000_000
T0 = int(pd.Timestamp("2026-03-01", tz="UTC").value // 1000)  # epoch us of a midnight


def _behaviors(
    rows: list[tuple[int, str, int, int, str]], values: list[float | None] | None = None
) -> pa.Table:
    """(t_us, domain, user, item, behavior) tuples (and optional values) as a contract behaviors table."""
    t, dom, user, item, beh = (list(x) for x in zip(*rows, strict=True))
    return pa.table(
        {
            C.EVENT_TIME: pa.array(t, pa.int64()).cast(C.TIMESTAMP),
            C.DOMAIN: dom,
            C.USER_ID: pa.array(user, pa.int64()),
            C.ITEM_ID: pa.array(item, pa.int64()),
            C.BEHAVIOR: beh,
            C.VALUE: pa.array(values, pa.float64()) if values is not None else pa.nulls(len(t), pa.float64()),
        }
    )


def _items(
    ids: list[int], cat: list[int | None], brand: list[int | None], shop: list[int | None]
) -> pa.Table:
    """A contract items table."""
    n = len(ids)
    return pa.table(
        {
            C.ITEM_ID: pa.array(ids, pa.int64()),
            C.CATEGORY_ID: pa.array(cat, pa.int64()),
            C.BRAND_ID: pa.array(brand, pa.int64()),
            C.SHOP_ID: pa.array(shop, pa.int64()),
            C.PRICE: pa.array([1.0] * n),
        }
    )


DOMAINS = pa.table(
    {
        C.DOMAIN: ["src", "src2", "tgt"],
        C.ROLE: [C.ROLE_SOURCE, C.ROLE_SOURCE, C.ROLE_TARGET],
        C.TASK: [C.TASK_CTR] * 3,
        "page_type": ["home", "home", "feed"],
    }
)


def _rows(pairs: list[tuple[int, int]]) -> pa.Table:
    """(user, t_us) query rows."""
    users, times = zip(*pairs, strict=True)
    return pa.table({C.USER_ID: pa.array(users, pa.int64()), C.EVENT_TIME: pa.array(times).cast(C.TIMESTAMP)})


def _reference(
    beh: pa.Table, items: pa.Table, rows: pa.Table, max_len: int, at_event_time: bool = False
) -> dict[str, list[list[int]]]:
    """Slow pure-Python reference: per row, source behaviours before the row's UTC midnight (or,
    at_event_time, before the row's own time)."""
    side = {r[C.ITEM_ID]: r for r in items.to_pylist()}
    src = {"src", "src2"}
    events = [
        (
            r[C.USER_ID], r[C.BEHAVIOR], int(pd.Timestamp(r[C.EVENT_TIME]).value // 1000), r[C.ITEM_ID],
            r[C.VALUE],
        )
        for r in beh.to_pylist()
        if r[C.DOMAIN] in src
    ]
    out: dict[str, list[list[int]]] = {c: [] for c in sequence_columns()}
    for r in rows.to_pylist():
        t = int(pd.Timestamp(r[C.EVENT_TIME]).value // 1000)
        midnight = t if at_event_time else t - t % DAY_US
        for b in C.BEHAVIOR_TYPES:
            mine = sorted(
                (et, it, v)
                for u, bb, et, it, v in events
                if u == r[C.USER_ID] and bb == b and et < midnight
            )
            mine = mine[-max_len:] if mine else []
            for f in C.SEQ_FIELDS:
                vals = []
                for et, it, v in mine:
                    if f == C.ITEM_ID:
                        vals.append(it)
                    elif f == C.EVENT_TIME:
                        vals.append(et)
                    elif f == C.VALUE:  # the value token: rounded (half to even), none -> reserved
                        vals.append(RESERVED_ID if v is None else int(round(v)))
                    else:
                        v = side.get(it, {}).get(f)
                        vals.append(RESERVED_ID if v is None else v)
                out[C.seq_col(b, f)].append(vals)
    return out


def test_matches_brute_force_reference_on_random_zone() -> None:
    """Random zone with ties, midnights, unknown items, null side info and values: every list equals the
    reference."""
    rng = np.random.default_rng(7)
    n = 600
    # times on a coarse grid (many exact ties and exact midnights), over 6 days
    t = T0 + rng.integers(0, 6 * 24, n) * 3_600_000_000
    dom = rng.choice(["src", "src2", "tgt"], n, p=[0.6, 0.2, 0.2])
    user = rng.integers(1, 9, n)
    item = rng.integers(100, 140, n)  # items 130..139 are not in the items table
    beh = rng.choice(list(C.BEHAVIOR_TYPES), n, p=[0.5, 0.25, 0.1, 0.1, 0.05])
    # values: a function of (item, time) so exact duplicates agree; nulls, halves and stars mixed
    val = ((item * 7 + t // 3_600_000_000) % 11) / 2.0
    values = [None if v == 0 else float(v) for v in val.tolist()]
    behaviors = _behaviors(list(zip(t.tolist(), dom, user.tolist(), item.tolist(), beh, strict=True)), values)
    ids = list(range(100, 130))
    items = _items(
        ids,
        [None if i % 7 == 0 else i % 5 for i in ids],
        [i % 3 for i in ids],
        [None if i % 4 == 0 else 1000 + i for i in ids],
    )
    max_len = 4
    snaps = sequence_snapshots(behaviors, items, DOMAINS, max_len)
    assert snaps.schema == snapshot_schema()
    # row times: exact midnights, exact behaviour times and random times; users 0 and 9 have nothing
    q_t = np.concatenate(
        [T0 + rng.integers(0, 8, 60) * DAY_US, rng.choice(t, 60), T0 + rng.integers(0, 8 * DAY_US, 80)]
    )
    q_u = rng.integers(0, 10, len(q_t))
    rows = _rows(list(zip(q_u.tolist(), q_t.tolist(), strict=True)))
    got = attach_sequences(rows, snaps)
    assert got.num_rows == rows.num_rows
    assert got[C.USER_ID].to_pylist() == rows[C.USER_ID].to_pylist()  # order kept
    want = _reference(behaviors, items, rows, max_len)
    for c in sequence_columns():
        assert got[c].to_pylist() == want[c], c
    lens = [len(x) for x in got[C.seq_col("browse", C.ITEM_ID)].to_pylist()]
    assert max(lens) == max_len and min(lens) == 0  # truncation and empties both exercised
    # event-time resolution: the same streams cut at each row's own time
    at_event = event_time_sequences(rows, behaviors, items, DOMAINS, max_len)
    want = _reference(behaviors, items, rows, max_len, at_event_time=True)
    for c in sequence_columns():
        assert at_event[c].to_pylist() == want[c], c
    assert at_event.to_pylist() != got.select(sequence_columns()).to_pylist()  # the two differ here
    midnights = _rows(list(zip(q_u.tolist(), (q_t - q_t % DAY_US).tolist(), strict=True)))
    assert (event_time_sequences(midnights, behaviors, items, DOMAINS, max_len).to_pylist()
            == attach_sequences(midnights, snaps).select(sequence_columns()).to_pylist())


def test_edge_times_and_tie_break() -> None:
    """Events at the row's exact time or exactly at midnight never appear; ties go by item_id."""
    noon = T0 + DAY_US // 2
    behaviors = _behaviors(
        [
            (noon, "src", 1, 12, "click"),
            (noon, "src", 1, 11, "click"),  # same time: item 11 first
            (T0 + DAY_US, "src", 1, 13, "click"),  # exactly at the next midnight
            (T0 + DAY_US + 5, "src", 1, 14, "click"),
            (noon, "tgt", 1, 15, "click"),  # target domain: never in sequences
        ]
    )
    items = _items([11, 12, 13, 14, 15], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    snaps = sequence_snapshots(behaviors, items, DOMAINS)
    assert snaps[C.SNAPSHOT_TIME].cast(pa.int64()).to_pylist() == [T0 + DAY_US, T0 + 2 * DAY_US]
    rows = _rows([(1, noon), (1, T0 + DAY_US), (1, T0 + DAY_US + 5), (1, T0 + 2 * DAY_US), (2, noon)])
    got = attach_sequences(rows, snaps)[C.seq_col("click", C.ITEM_ID)].to_pylist()
    assert got == [[], [11, 12], [11, 12], [11, 12, 13, 14], []]
    times = attach_sequences(rows, snaps)[C.seq_col("click", C.EVENT_TIME)].to_pylist()
    row_t = rows[C.EVENT_TIME].cast(pa.int64()).to_pylist()
    assert all(e < rt for ts, rt in zip(times, row_t, strict=True) for e in ts)


def test_reserved_value_for_unknown_side_info() -> None:
    """Unknown items and null side info become -1 in the lists; ids stay real."""
    behaviors = _behaviors([(T0, "src", 1, 50, "browse"), (T0 + 1, "src", 1, 51, "browse")])
    items = _items([50], [None], [7], [8])  # item 51 is unknown
    snaps = sequence_snapshots(behaviors, items, DOMAINS)
    row = snaps.to_pylist()[0]
    assert row[C.seq_col("browse", C.ITEM_ID)] == [50, 51]
    assert row[C.seq_col("browse", C.CATEGORY_ID)] == [RESERVED_ID, RESERVED_ID]
    assert row[C.seq_col("browse", C.BRAND_ID)] == [7, RESERVED_ID]
    assert row[C.seq_col("purchase", C.ITEM_ID)] == []


@pytest.mark.parametrize("where", ["item", "category", "behavior_item"])
def test_real_id_equal_to_reserved_value_is_rejected(where: str) -> None:
    """A real id of -1 would collide with 'unknown': ContractError naming the column."""
    item_id = -1 if where in ("item", "behavior_item") else 5
    behaviors = _behaviors([(T0, "src", 1, item_id, "browse")])
    items = _items([item_id if where == "item" else 5], [-1 if where == "category" else 1], [1], [1])
    with pytest.raises(C.ContractError, match="reserved"):
        sequence_snapshots(behaviors, items, DOMAINS)


def test_bad_input_errors() -> None:
    """Unknown behaviour type, no source domain, duplicate items, bad max_len: clear errors."""
    items = _items([5], [1], [1], [1])
    with pytest.raises(C.ContractError, match="unknown behavior"):
        sequence_snapshots(_behaviors([(T0, "src", 1, 5, "like")]), items, DOMAINS)
    no_src = DOMAINS.filter(pa.array([False, False, True]))
    with pytest.raises(C.ContractError, match="role='source'"):
        sequence_snapshots(_behaviors([(T0, "src", 1, 5, "browse")]), items, no_src)
    dup = _items([5, 5], [1, 2], [1, 1], [1, 1])
    with pytest.raises(C.ContractError, match="duplicate item"):
        sequence_snapshots(_behaviors([(T0, "src", 1, 5, "browse")]), dup, DOMAINS)
    with pytest.raises(ValueError, match="max_len"):
        sequence_snapshots(_behaviors([(T0, "src", 1, 5, "browse")]), items, DOMAINS, max_len=0)
    snaps = sequence_snapshots(_behaviors([(T0, "src", 1, 5, "browse")]), items, DOMAINS)
    with pytest.raises(C.ContractError, match="duplicate"):
        attach_sequences(_rows([(1, T0 + DAY_US)]), pa.concat_tables([snaps, snaps]))
    with pytest.raises(C.ContractError, match="user_id"):
        attach_sequences(pa.table({C.EVENT_TIME: _rows([(1, T0)])[C.EVENT_TIME]}), snaps)


def test_pandas_rows_keep_index_and_order() -> None:
    """attach_sequences on a DataFrame returns a DataFrame: same index, same order, other columns intact."""
    behaviors = _behaviors([(T0, "src", 1, 5, "cart"), (T0 + DAY_US, "src", 2, 6, "cart")])
    snaps = sequence_snapshots(behaviors, _items([5, 6], [1, 2], [1, 2], [1, 2]), DOMAINS)
    df = pd.DataFrame(
        {
            C.USER_ID: [2, 1, 3, 1],
            C.EVENT_TIME: pd.to_datetime(
                [T0 + 3 * DAY_US, T0 + 3 * DAY_US, T0 + 3 * DAY_US, T0], unit="us", utc=True
            ),
            "extra": ["a", "b", "c", "d"],
        },
        index=[40, 30, 20, 10],
    )
    out = attach_sequences(df, snaps)
    assert list(out.index) == [40, 30, 20, 10]
    assert list(out["extra"]) == ["a", "b", "c", "d"]
    assert [list(x) for x in out[C.seq_col("cart", C.ITEM_ID)]] == [[6], [5], [], []]
    assert out[C.seq_col("cart", C.ITEM_ID)].dtype == pd.ArrowDtype(SEQUENCE_TYPE)


def test_normalize_turns_nulls_into_empty_lists() -> None:
    """Feature-store style output (nulls, object columns) normalises to the attach_sequences form."""
    df = pd.DataFrame({c: [[1, 2], None] for c in sequence_columns()})
    out = normalize_sequences(df)
    col = out[C.seq_col("rate", C.ITEM_ID)]
    assert col.dtype == pd.ArrowDtype(SEQUENCE_TYPE)
    assert [list(x) for x in col] == [[1, 2], []]
    tbl = normalize_sequences(pa.Table.from_pandas(df))
    assert tbl[C.seq_col("rate", C.ITEM_ID)].to_pylist() == [[1, 2], []]
    assert empty_sequences(3)[C.seq_col("click", C.EVENT_TIME)].to_pylist() == [[], [], []]
    with pytest.raises(C.ContractError, match="missing"):
        normalize_sequences(df.drop(columns=[C.seq_col("rate", C.ITEM_ID)]))


def test_no_source_behaviour_gives_no_snapshots_and_empty_lists() -> None:
    """Only target-domain behaviours: zero snapshots; attaching still returns every row with empty lists."""
    behaviors = _behaviors([(T0, "tgt", 1, 5, "browse")])
    snaps = sequence_snapshots(behaviors, _items([5], [1], [1], [1]), DOMAINS)
    assert snaps.num_rows == 0 and snaps.schema == snapshot_schema()
    got = attach_sequences(_rows([(1, T0 + 2 * DAY_US), (2, T0)]), snaps)
    assert got.num_rows == 2
    for c in sequence_columns():
        assert got[c].to_pylist() == [[], []]
