"""The served Bento over real HTTP: probes, ranking, cold start, OOV items, bad requests, batching."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from tests.serving.conftest import Served

UNKNOWN_USER = 987_654_321_012
UNKNOWN_ITEMS = [10**12 + 7, 10**12 + 11]


@pytest.fixture(scope="module")
def client(served: Served) -> httpx.Client:
    """An HTTP client on the served Bento."""
    with httpx.Client(base_url=served.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def known(served: Served) -> tuple[int, list[int]]:
    """A user with source-domain history in the online store and 20 catalogue items."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features import contract as C
    from features.feature_repo.sources import ITEMS_FILE, USER_SEQUENCES_FILE
    from features.store import data_dir

    seqs = pq.read_table(data_dir(served.feast) / USER_SEQUENCES_FILE)
    lengths = pc.list_value_length(seqs.column(C.seq_col("click", C.ITEM_ID))).fill_null(0)
    users = seqs.filter(pc.greater(lengths, 0)).column(C.USER_ID).to_pylist()
    items = pq.read_table(data_dir(served.feast) / ITEMS_FILE).column(C.ITEM_ID).to_pylist()
    assert users and len(items) >= 20
    return int(users[0]), [int(i) for i in items[:20]]


def test_probes_and_metrics(client: httpx.Client, known: tuple[int, list[int]]) -> None:
    """/healthz and /readyz answer 200 once loaded; /metrics is Prometheus text counting /rank."""
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    user, items = known
    assert client.post("/rank", json={"user_id": user, "item_ids": items}).status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "# TYPE bentoml_service_request_duration_seconds histogram" in metrics.text
    assert 'endpoint="/rank"' in metrics.text


def test_rank_sorts_candidates_best_first(
    client: httpx.Client, served: Served, known: tuple[int, list[int]]
) -> None:
    """A known user: every candidate scored once, best first, probabilities, with the model tag."""
    user, items = known
    resp = client.post(
        "/rank", json={"user_id": user, "item_ids": items, "event_time": "2026-09-12T08:00:00Z"}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == served.model_tag
    assert body["domain"] == served.domain and body["user_id"] == user
    assert body["cold_start"] is False
    ranked = body["ranked"]
    assert sorted(r["item_id"] for r in ranked) == sorted(items)
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)
    assert len(set(scores)) > 1, "all candidates scored the same: item features are not reaching the model"


def test_unknown_user_is_cold_start(client: httpx.Client, known: tuple[int, list[int]]) -> None:
    """A user the store has never seen is scored with empty sequences, not rejected."""
    _, items = known
    resp = client.post("/rank", json={"user_id": UNKNOWN_USER, "item_ids": items})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["cold_start"] is True
    assert len(body["ranked"]) == len(items)
    assert all(math.isfinite(r["score"]) for r in body["ranked"])


def test_unknown_items_score_through_oov(client: httpx.Client, known: tuple[int, list[int]]) -> None:
    """Items unknown to model and store are scored (OOV index); two of them are indistinguishable."""
    user, items = known
    resp = client.post("/rank", json={"user_id": user, "item_ids": [*UNKNOWN_ITEMS, items[0]]})
    assert resp.status_code == 200, resp.text
    scores = {r["item_id"]: r["score"] for r in resp.json()["ranked"]}
    assert scores[UNKNOWN_ITEMS[0]] == pytest.approx(scores[UNKNOWN_ITEMS[1]], abs=1e-9)


BAD_BODIES = [
    ('{"user_id": 1, "item_ids": [1, 2', "json_invalid", None),
    ('{"item_ids": [1]}', "missing", "user_id"),
    ('{"user_id": 1}', "missing", "item_ids"),
    ('{"user_id": "7", "item_ids": [1]}', "int_type", "user_id"),
    ('{"user_id": 1.5, "item_ids": [1]}', "int_type", "user_id"),
    ('{"user_id": true, "item_ids": [1]}', "int_type", "user_id"),
    ('{"user_id": 1, "item_ids": "1,2"}', "list_type", "item_ids"),
    ('{"user_id": 1, "item_ids": [1, "x"]}', "int_type", "item_ids"),
    ('{"user_id": -1, "item_ids": [1]}', "greater_than_equal", "user_id"),
    ('{"user_id": 1, "item_ids": [3, -5]}', "greater_than_equal", "item_ids"),
    ('{"user_id": 1, "item_ids": []}', "too_short", "item_ids"),
    (json.dumps({"user_id": 1, "item_ids": list(range(1001))}), "too_long", "item_ids"),
    (
        '{"user_id": 1, "item_ids": [1], "event_time": "yesterday"}',
        "datetime_from_date_parsing",
        "event_time",
    ),
    ("[1, 2]", "model_type", None),
]


@pytest.mark.parametrize(
    ("body", "error_type", "field"), BAD_BODIES, ids=[b[1] + ":" + str(b[2]) for b in BAD_BODIES]
)
def test_bad_request_is_400_naming_the_field(
    client: httpx.Client, body: str, error_type: str, field: str | None
) -> None:
    """Malformed, mistyped, negative, empty and oversized requests: 400 with the field and reason."""
    resp = client.post("/rank", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert error_type in {d["type"] for d in detail}, detail
    if field is not None:
        assert any(d["loc"] and d["loc"][0] == field for d in detail), detail


def test_worker_survives_bad_requests(client: httpx.Client, known: tuple[int, list[int]]) -> None:
    """After a burst of bad requests the same server still ranks (no crashed worker, no 500)."""
    user, items = known
    for body, _, _ in BAD_BODIES:
        code = client.post("/rank", content=body, headers={"content-type": "application/json"}).status_code
        assert code == 400
    assert client.post("/rank", json={"user_id": user, "item_ids": items[:3]}).status_code == 200


def test_rank_batch_matches_rank(client: httpx.Client, known: tuple[int, list[int]]) -> None:
    """/rank_batch (adaptive batching) gives each query exactly what /rank gives it."""
    user, items = known
    queries = [{"user_id": user, "item_ids": items[:7]}, {"user_id": UNKNOWN_USER, "item_ids": items[5:15]}]
    resp = client.post("/rank_batch", json={"queries": queries})
    assert resp.status_code == 200, resp.text
    batch = resp.json()
    assert len(batch) == 2
    for q, got in zip(queries, batch, strict=True):
        single = client.post("/rank", json=q).json()
        assert [r["item_id"] for r in got["ranked"]] == [r["item_id"] for r in single["ranked"]]
        assert [r["score"] for r in got["ranked"]] == pytest.approx(
            [r["score"] for r in single["ranked"]], abs=1e-6
        )
    empty = client.post("/rank_batch", json={"queries": []})
    assert empty.status_code == 400 and empty.json()["detail"][0]["loc"] == ["queries"]
    bad = client.post("/rank_batch", json={"queries": [{"user_id": 1, "item_ids": [-1]}]})
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"][:3] == ["queries", 0, "item_ids"]


def test_openapi_documents_rank(client: httpx.Client) -> None:
    """BentoML's OpenAPI document describes POST /rank with the candidate cap."""
    doc = client.get("/docs.json").json()
    assert "post" in doc["paths"]["/rank"]
    schema = json.dumps(doc)
    assert '"maxItems": 1000' in schema and '"minimum": 0' in schema


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_event_time_out_of_range_is_400(
    client: httpx.Client, known: tuple[int, list[int]], when: str
) -> None:
    """An event_time with no UTC date in years 1-9999 is the sender's 400 naming event_time, not a 500."""
    user, items = known
    query = {"user_id": user, "item_ids": items[:3], "event_time": when}
    resp = client.post("/rank", json=query)
    assert resp.status_code == 400, resp.text
    assert [d["loc"] for d in resp.json()["detail"]] == [["event_time"]]
    resp = client.post("/rank_batch", json={"queries": [query]})
    assert resp.status_code == 400, resp.text
    assert [d["loc"] for d in resp.json()["detail"]] == [["queries", 0, "event_time"]]


def test_bad_query_never_fails_other_clients_batch(served: Served, known: tuple[int, list[int]]) -> None:
    """Concurrent /rank_batch calls merged into one batch: the bad one gets 400, every good one 200."""
    from concurrent.futures import ThreadPoolExecutor

    user, items = known
    good = {"queries": [{"user_id": user, "item_ids": items[:5]}]}
    bad = {"queries": [{"user_id": user, "item_ids": items[:5], "event_time": "0001-01-01T00:00:00+14:00"}]}
    bodies = [good] * 6 + [bad] + [good] * 6

    def post(body: dict) -> int:
        """One client's call."""
        with httpx.Client(base_url=served.url, timeout=60) as c:
            return c.post("/rank_batch", json=body).status_code

    for _ in range(3):  # several rounds: the bad call lands in different batches
        with ThreadPoolExecutor(len(bodies)) as pool:
            codes = list(pool.map(post, bodies))
        assert codes == [200] * 6 + [400] + [200] * 6, codes


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_is_413(client: httpx.Client, known: tuple[int, list[int]], chunked: bool) -> None:
    """A body over DACDR_MAX_BODY_BYTES (default 1 MiB) is refused with 413 before it is parsed."""
    from bento.config import DEFAULT_MAX_BODY_BYTES

    user, items = known
    pad = "x" * (DEFAULT_MAX_BODY_BYTES + 10)
    body = json.dumps({"user_id": user, "item_ids": items[:3], "pad": pad}).encode()
    content = iter([body[: len(body) // 2], body[len(body) // 2 :]]) if chunked else body
    resp = client.post("/rank", content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 413, resp.text
    assert resp.json()["detail"][0]["loc"] == ["body"]
    assert client.post("/rank", json={"user_id": user, "item_ids": items[:3]}).status_code == 200


def test_bad_requests_log_one_line_without_the_body(
    client: httpx.Client, served: Served, known: tuple[int, list[int]]
) -> None:
    """A battery of bad requests: no ERROR record, no traceback, no raw input, no per-request warning."""
    marker = "BAD-INPUT-MARKER-91c2"
    start = served.log.stat().st_size
    user, items = known
    for body, _, _ in BAD_BODIES:
        client.post("/rank", content=body, headers={"content-type": "application/json"})
    client.post("/rank", json={"user_id": marker, "item_ids": [1]})
    for _ in range(3):
        assert client.post("/rank", json={"user_id": user, "item_ids": items[:3]}).status_code == 200
    deadline = time.monotonic() + 10  # the server's log reaches the file shortly after the answer
    while "user_id: int_type" not in served.log.read_text()[start:] and time.monotonic() < deadline:
        time.sleep(0.2)
    log = served.log.read_text()[start:]
    assert "user_id: int_type" in log, log[-3000:]
    assert "[ERROR]" not in log and "Traceback" not in log, log[-3000:]
    assert marker not in log
    assert "Deprecat" not in log, log[-3000:]


def _descendants(root: int) -> list[str]:
    """Command lines of every live descendant process of `root` (from /proc)."""
    from pathlib import Path

    children: dict[int, list[int]] = {}
    cmds: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmds[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
        children.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(cmds.get(child, ""))
            todo.append(child)
    return out


def test_server_runs_the_requested_workers(served: Served) -> None:
    """`workers_env(..., 2)` reaches `bentoml serve`: two service worker processes under the server."""
    from tests.serving.conftest import SERVE_WORKERS

    procs = _descendants(served.pid)
    workers = [c for c in procs if "_bentoml_impl.worker" in c]
    assert len(workers) == SERVE_WORKERS, procs


def test_workers_env_keeps_other_overrides_and_rejects_bad_values() -> None:
    """The override is merged into what is already set; a bad count or bad JSON is a ValueError."""
    from bento.config import ENV_BENTOML_OVERRIDES, workers_env

    env = workers_env({ENV_BENTOML_OVERRIDES: json.dumps({"services": {"dacdr": {"threads": 1}}})}, 3)
    assert json.loads(env[ENV_BENTOML_OVERRIDES]) == {"services": {"dacdr": {"threads": 1, "workers": 3}}}
    with pytest.raises(ValueError, match="workers must be >= 1"):
        workers_env({}, 0)
    with pytest.raises(ValueError, match="not valid JSON"):
        workers_env({ENV_BENTOML_OVERRIDES: "{"}, 2)
