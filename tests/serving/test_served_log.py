"""The served-ranking log and A/B arms: request ids, one parquet row per returned item, sticky
arms from the registry, shadow rows, exploration, and a sink that fails without failing a request."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from bento.served_log import SCHEMA, ServedLog, ServedRows
from tests.serving.conftest import Served

FLUSH_WAIT_S = 10.0


def rows(request_id: str, n: int = 3, day: str = "2026-12-04") -> ServedRows:
    """One ranking's rows."""
    when = dt.datetime.fromisoformat(f"{day}T10:00:00+00:00")
    return ServedRows(
        request_id=request_id,
        event_time_us=int(when.timestamp() * 1_000_000),
        day=day,
        domain="d",
        user_id=7,
        model_tag="dacdr-d:v1",
        arm="production",
        experiment_id=None,
        explore=False,
        item_ids=np.arange(n, dtype=np.int64),
        scores=np.linspace(1, 0, n),
        propensities=np.ones(n),
    )


def read_log(root: Path) -> pa.Table:
    """Every row of the served log under root (hive partitions: dt becomes a column)."""
    files = [str(p) for p in (root / "served").rglob("part-*.parquet")]
    if not files:
        return SCHEMA.empty_table()
    return ds.dataset(files, format="parquet", schema=SCHEMA).to_table()


def test_log_writes_partitioned_parquet_of_the_contract(tmp_path: Path) -> None:
    """Two days -> two dt= partitions; columns and types as the contract says; close() flushes."""
    log = ServedLog(tmp_path, flush_seconds=60)
    log.put(rows("a", 3, "2026-12-04"))
    log.put(rows("b", 2, "2026-12-05"))
    log.close()
    parts = sorted(p.parent.name for p in (tmp_path / "served").rglob("part-*.parquet"))
    assert parts == ["dt=2026-12-04", "dt=2026-12-05"]
    table = read_log(tmp_path)
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == 5 and log.written == 5 and log.dropped == 0
    first = table.filter(ds.field("request_id") == "a").sort_by("position")
    assert first.column("position").to_pylist() == [1, 2, 3]
    assert first.column("event_time").type == pa.timestamp("us", tz="UTC")
    assert first.column("experiment_id").null_count == 3


def test_broken_sink_and_full_queue_drop_rows_counted(tmp_path: Path) -> None:
    """The log folder is a file: every row dropped and counted; a full queue drops, never waits."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    dropped: list[int] = []
    log = ServedLog(blocker, on_dropped=dropped.append, flush_seconds=0.05)
    log.put(rows("a", 4))
    log.close()
    assert log.dropped == 4 and sum(dropped) == 4 and log.written == 0
    full = ServedLog(tmp_path / "ok", capacity=1, flush_seconds=60)
    t0 = time.perf_counter()
    for i in range(200):
        full.put(rows(f"r{i}", 5))
    assert time.perf_counter() - t0 < 0.5
    full.close()
    assert full.dropped > 0 and full.dropped + full.written == 200 * 5


def wait_for_rows(root: Path, request_ids: set[str]) -> pa.Table:
    """The log rows of these requests, once the server's writer has flushed them."""
    deadline = time.monotonic() + FLUSH_WAIT_S
    while True:
        table = read_log(root)
        got = table.filter(ds.field("request_id").isin(sorted(request_ids)))
        if set(got.column("request_id").to_pylist()) >= request_ids or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.fixture(scope="module")
def known_user(served: Served) -> tuple[int, list[int]]:
    """A user and ten items of the served store."""
    import pyarrow.parquet as pq

    from features.store import data_dir

    users = pq.read_table(data_dir(served.feast) / "user_packed.parquet", columns=["user_id"]).column(0)
    items = pq.read_table(data_dir(served.feast) / "items.parquet", columns=["item_id"]).column(0)
    return int(users[0].as_py()), [int(i) for i in items.slice(0, 10).to_pylist()]


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "semi;colon", 5])
def test_bad_request_id_is_400(served: Served, known_user: tuple[int, list[int]], bad: object) -> None:
    """request_id: 1-128 characters of [A-Za-z0-9._:-], else 400 naming it."""
    user, items = known_user
    resp = httpx.post(f"{served.url}/rank", json={"user_id": user, "item_ids": items, "request_id": bad})
    assert resp.status_code == 400 and "request_id" in resp.text


def test_responses_echo_request_ids_and_are_logged(served: Served, known_user: tuple[int, list[int]]) -> None:
    """Given ids are echoed, missing ones generated; one log row per returned item, in order."""
    user, items = known_user
    with httpx.Client(base_url=served.url, timeout=30) as client:
        one = client.post(
            "/rank", json={"user_id": user, "item_ids": items, "request_id": "req-1.a:b"}
        ).json()
        anon = client.post("/rank", json={"user_id": user, "item_ids": items}).json()
        batch = client.post(
            "/rank_batch",
            json={"queries": [{"user_id": user, "item_ids": items[:4], "request_id": "req-2"}]},
        ).json()
    assert one["request_id"] == "req-1.a:b" and batch[0]["request_id"] == "req-2"
    assert len(anon["request_id"]) == 32 and int(anon["request_id"], 16) >= 0
    for body in (one, anon, batch[0]):
        assert body["arm"] == "production" and body["experiment_id"] is None
    got = wait_for_rows(served.log_dir, {"req-1.a:b", "req-2", anon["request_id"]})
    logged = got.filter(ds.field("request_id") == "req-1.a:b").sort_by("position")
    assert logged.column("item_id").to_pylist() == [r["item_id"] for r in one["ranked"]]
    assert logged.column("score").to_pylist() == pytest.approx([r["score"] for r in one["ranked"]])
    assert set(logged.column("model_tag").to_pylist()) == {served.model_tag}
    assert logged.column("propensity").to_pylist() == [1.0] * len(items)
    assert not any(logged.column("explore").to_pylist())
    assert got.filter(ds.field("request_id") == "req-2").num_rows == 4


def test_experiment_arms_are_sticky_logged_and_change_without_rebuild(
    served: Served, known_user: tuple[int, list[int]]
) -> None:
    """An A/A experiment written to the registry: each user's arm is bento.arms.assign's, shadow
    rows are logged beside the answer, exploration randomises some orders; removing it restores
    'production' within seconds, no rebuild or restart."""
    from bento.arms import Experiment, assign

    _, items = known_user
    registry = served.home / "dacdr_registry" / f"{served.domain}.json"
    before = registry.read_text() if registry.exists() else None
    data = json.loads(before) if before else {"domain": served.domain, "stack": [], "history": []}
    raw = {
        "id": "exp-aa",
        "salt": "salt-1",
        "exploration": 0.5,
        "arms": [
            {"name": "control", "model_tag": served.model_tag, "share": 0.5, "mode": "live"},
            {"name": "treatment", "model_tag": served.model_tag, "share": 0.5, "mode": "live"},
            {"name": "shadow", "model_tag": served.model_tag, "share": 0.0, "mode": "shadow"},
        ],
    }
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps({**data, "experiment": raw}))
    exp = Experiment.parse(raw)
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            deadline = time.monotonic() + 15
            while client.post("/rank", json={"user_id": 1, "item_ids": items}).json()["arm"] == "production":
                assert time.monotonic() < deadline, "the experiment was not picked up"
                time.sleep(0.3)
            answers = {}
            for user in range(40):
                body = client.post(
                    "/rank", json={"user_id": user, "item_ids": items, "request_id": f"aa-{user}"}
                ).json()
                assert body["arm"] == assign(exp, user).name and body["experiment_id"] == "exp-aa"
                again = client.post("/rank", json={"user_id": user, "item_ids": items}).json()
                assert again["arm"] == body["arm"]
                answers[f"aa-{user}"] = body
        got = wait_for_rows(served.log_dir, set(answers))
        arms = got.group_by(["request_id", "arm"]).aggregate([("position", "count")])
        assert arms.num_rows == 2 * len(answers)  # each request: its live arm and the shadow
        explored = got.filter(ds.field("explore")).column("request_id").unique().to_pylist()
        assert 5 <= len(explored) <= 35  # about half of 40
        for rid in explored:
            live = got.filter((ds.field("request_id") == rid) & (ds.field("arm") != "shadow"))
            props = live.column("propensity").to_numpy()
            assert np.all(np.isclose(props, 0.05) | np.isclose(props, 0.55))
    finally:
        if before is None:
            registry.unlink()
        else:
            registry.write_text(before)
    deadline = time.monotonic() + 15
    while (
        httpx.post(f"{served.url}/rank", json={"user_id": 1, "item_ids": items}).json()["arm"] != "production"
    ):
        assert time.monotonic() < deadline, "removing the experiment was not picked up"
        time.sleep(0.3)
