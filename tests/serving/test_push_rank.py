"""Same-day behaviour reaches /rank at once: push a new user's clicks, rank; a replay changes nothing."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa

from features import contract as C
from features import io
from features.push import push
from features.sequences import source_domains
from tests.serving.conftest import Served

PUSHED_USER = 777_000_000_123  # in no log: cold until the push
DAY = "2026-12-01"


def test_pushed_behaviour_is_ranked_within_a_second(served: Served, tiny_logs: Path, tmp_path: Path) -> None:
    """Cold before; warm, with other scores, on the first /rank after the push (no cache to wait
    for); a replay writes nothing and ranks the same."""
    logs = tmp_path / "logs"
    for table in (C.ITEMS, C.DOMAINS):
        shutil.copytree(tiny_logs / table, logs / table)
    items = io.read_table(tiny_logs, C.ITEMS).column(C.ITEM_ID).to_pylist()[:20]
    source = source_domains(io.read_table(tiny_logs, C.DOMAINS))[0]
    start = datetime.fromisoformat(DAY).replace(tzinfo=UTC) + timedelta(hours=9)
    clicks = pa.table({
        C.EVENT_TIME: pa.array([start + timedelta(minutes=m) for m in range(6)], C.TIMESTAMP),
        C.DOMAIN: [source] * 6,
        C.USER_ID: pa.array([PUSHED_USER] * 6, pa.int64()),
        C.ITEM_ID: pa.array(items[:6], pa.int64()),
        C.BEHAVIOR: ["click"] * 6,
        C.VALUE: pa.array([None] * 6, pa.float64()),
    })
    io.write_table(clicks, logs / C.BEHAVIORS / f"dt={DAY}" / "part-0.parquet")
    request = {"user_id": PUSHED_USER, "item_ids": items}
    with httpx.Client(base_url=served.url, timeout=30) as client:
        before = client.post("/rank", json=request).json()
        assert before["cold_start"] is True
        result = push(logs, DAY, served.feast)
        after = client.post("/rank", json=request).json()  # the very next request sees the push
        assert result.changed == 1 and after["cold_start"] is False
        assert after["ranked"] != before["ranked"]
        assert push(logs, DAY, served.feast).changed == 0  # replay
        again = client.post("/rank", json=request).json()
        assert {**again, "request_id": None} == {**after, "request_id": None}  # each answer has its own id
