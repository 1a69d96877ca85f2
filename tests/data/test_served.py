"""The served log joined with the click log: contract impressions, shadow rows dropped, retries once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from features import contract as C
from features.io import check_contract, write_table
from features.served import (
    CLICKS,
    CLICKS_SCHEMA,
    SERVED,
    SERVED_SCHEMA,
    arm_position,
    assign_arms,
    impressions_of,
    join_clicks,
    read_clicks,
    read_served,
)

DAY = "2026-09-12"
T0 = 1_789_200_000_000_000  # 2026-09-12T08:00:00Z in epoch microseconds


def _served(rows: list[tuple]) -> pa.Table:
    """Served rows from (request_id, user, item, position, arm)."""
    n = len(rows)
    return pa.table(
        {
            C.REQUEST_ID: [r[0] for r in rows],
            C.EVENT_TIME: pa.array([T0 + i for i in range(n)], pa.int64()).cast(C.TIMESTAMP),
            C.DOMAIN: ["deals_page"] * n,
            C.USER_ID: [r[1] for r in rows],
            C.ITEM_ID: [r[2] for r in rows],
            "position": pa.array([r[3] for r in rows], pa.int32()),
            "score": [1.0 / r[3] for r in rows],
            "model_tag": ["dacdr-deals_page:v1"] * n,
            "arm": [r[4] for r in rows],
            "experiment_id": ["e1"] * n,
            "propensity": [1.0] * n,
            "explore": [False] * n,
        },
        schema=SERVED_SCHEMA,
    )


def _clicks(rows: list[tuple]) -> pa.Table:
    """Clicks from (request_id, item, value)."""
    return pa.table(
        {
            C.REQUEST_ID: [r[0] for r in rows],
            C.EVENT_TIME: pa.array([T0 + 10] * len(rows), pa.int64()).cast(C.TIMESTAMP),
            C.DOMAIN: ["deals_page"] * len(rows),
            C.ITEM_ID: [r[1] for r in rows],
            "purchase_value": [r[2] for r in rows],
        },
        schema=CLICKS_SCHEMA,
    )


def test_join_labels_shown_rows_from_parquet_files(tmp_path: Path) -> None:
    """Files in the service's layout -> one labelled row per shown item; impressions are contract-valid."""
    served = _served([
        ("r1", 1, 10, 1, "control"), ("r1", 1, 11, 2, "control"),
        ("r1", 1, 10, 1, "control"),  # a retried write: counted once
        ("r1", 1, 11, 1, "shadow_b"), ("r1", 1, 10, 2, "shadow_b"),  # shadow: scored, never shown
        ("r2", 2, 10, 1, "candidate"), ("r2", 2, 12, 2, "candidate"),
    ])
    clicks = _clicks([("r1", 11, 0.0), ("r2", 10, 25.5), ("r9", 10, 0.0)])  # r9: never served, ignored
    write_table(served, C.partition_dir(tmp_path, SERVED, DAY) / "part-0.parquet")
    write_table(clicks, C.partition_dir(tmp_path, CLICKS, DAY) / "part-0.parquet")
    joined = join_clicks(read_served(tmp_path, [DAY]), read_clicks(tmp_path), shadow_arms=["shadow_b"])
    rows = joined.to_pylist()
    got = {(r[C.REQUEST_ID], r[C.ITEM_ID]): (r["arm"], r[C.LABEL], r["purchase_value"]) for r in rows}
    assert got == {
        ("r1", 10): ("control", 0.0, 0.0), ("r1", 11): ("control", 1.0, 0.0),
        ("r2", 10): ("candidate", 1.0, 25.5), ("r2", 12): ("candidate", 0.0, 0.0),
    }
    imp = impressions_of(joined)
    assert imp.schema == C.SCHEMAS[C.IMPRESSIONS]
    zone = tmp_path / "zone"
    write_table(imp, C.partition_dir(zone, C.IMPRESSIONS, DAY) / "part-0.parquet")
    check_contract(zone, tables=[C.IMPRESSIONS])


def test_no_logs_is_an_empty_table(tmp_path: Path) -> None:
    """A folder without served files reads as an empty served table (not an error)."""
    assert read_served(tmp_path).num_rows == 0 and read_clicks(tmp_path).num_rows == 0


def test_assignment_follows_the_contract_hash_sticky_and_shared() -> None:
    """u = sha256("salt:user")[:16 hex] / 2**64; the first live arm whose cumulative share exceeds u."""
    import hashlib

    users = np.arange(10_000, 14_000, dtype=np.int64)
    u = arm_position("s1", users)
    assert u[0] == int(hashlib.sha256(b"s1:10000").hexdigest()[:16], 16) / 2**64
    arms = assign_arms("s1", [0.7, 0.3], users)
    assert set(np.unique(arms)) == {0, 1}
    assert abs((arms == 1).mean() - 0.3) < 0.03
    assert np.array_equal(arms, assign_arms("s1", [0.7, 0.3], users))  # sticky
    assert np.array_equal(assign_arms("s1", [0.7, 0.3], np.repeat(users[:5], 3)), np.repeat(arms[:5], 3))
    assert (assign_arms("s2", [0.7, 0.3], users) != arms).any()  # another salt, another split


@pytest.mark.parametrize("bad", [0, -1])
def test_positions_are_one_based(bad: int) -> None:
    """The examination curve refuses a 0 or negative position."""
    from features.simulator import examination

    with pytest.raises(ValueError, match="1-based"):
        examination(np.array([1, bad]))
