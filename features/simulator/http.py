"""A live ranking service as a RankService: POST /rank_batch with request ids, read back what it served.

The served rows come from the service's own served log (`<served_log>/served/dt=*/`, every arm,
propensities included) when its folder is given, else from the responses themselves (the shown
arm only, no propensities). Either way their event_time is the simulated request time, so the
rows land on the simulated day.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features.served import SERVED_SCHEMA, read_served
from features.simulator.traffic import Requests

BATCH = 32  # queries per /rank_batch call


class ServiceError(RuntimeError):
    """The service answered something the online loop cannot use; the message says what."""


class HttpService:
    """RankService over a live dacdr service (bento/service.py) at `url`."""

    def __init__(self, url: str, served_log: Path | str | None = None, timeout: float = 30.0,
                 log_wait_s: float = 10.0) -> None:
        """The service's base URL and, optionally, the folder it writes its served log to."""
        self.url = url.rstrip("/")
        self.served_log = Path(served_log) if served_log else None
        self.timeout, self.log_wait_s = timeout, log_wait_s

    def _post(self, client, queries: list[dict]) -> list[dict]:
        """One /rank_batch call; ServiceError on anything but a 200 with one answer per query."""
        resp = client.post(f"{self.url}/rank_batch", json={"queries": queries})
        if resp.status_code != 200:
            raise ServiceError(f"{self.url}/rank_batch answered {resp.status_code}: {resp.text[:200]}")
        out = resp.json()
        if len(out) != len(queries):
            raise ServiceError(f"{self.url}/rank_batch: {len(out)} rankings for {len(queries)} queries")
        if any(o.get("request_id") != q["request_id"] for o, q in zip(out, queries, strict=True)):
            raise ServiceError(f"{self.url} does not echo request_id: it predates the served log")
        return out

    def __call__(self, requests: Requests) -> pa.Table:
        """Rank every request on the service; the served rows (SERVED_SCHEMA) of all its arms."""
        import httpx

        iso = [datetime.fromtimestamp(t / 1e6, UTC).isoformat() for t in requests.time_us]
        answers: list[dict] = []
        with httpx.Client(timeout=self.timeout) as client:
            for lo in range(0, len(requests), BATCH):
                queries = [
                    {"user_id": int(requests.user_id[i]), "item_ids": requests.item_ids[i].tolist(),
                     "event_time": iso[i], "request_id": str(requests.request_id[i])}
                    for i in range(lo, min(lo + BATCH, len(requests)))
                ]
                answers.extend(self._post(client, queries))
        served = self._from_log(requests) if self.served_log else self._from_answers(requests, answers)
        return _at_request_times(served, requests)

    def _from_answers(self, requests: Requests, answers: list[dict]) -> pa.Table:
        """Served rows rebuilt from the responses (the shown arm only)."""
        n = [len(a["ranked"]) for a in answers]
        rep = np.repeat(np.arange(len(answers)), n)
        ranked = [r for a in answers for r in a["ranked"]]
        return pa.table(
            {
                C.REQUEST_ID: pa.array(requests.request_id[rep], pa.string()),
                C.EVENT_TIME: pa.array(requests.time_us[rep], pa.int64()).cast(C.TIMESTAMP),
                C.DOMAIN: [a["domain"] for a in answers for _ in a["ranked"]],
                C.USER_ID: pa.array(requests.user_id[rep]),
                C.ITEM_ID: pa.array([r["item_id"] for r in ranked], pa.int64()),
                "position": pa.array(np.concatenate([np.arange(1, k + 1) for k in n]), pa.int32()),
                "score": pa.array([r["score"] for r in ranked], pa.float64()),
                "model_tag": [a["model"] for a in answers for _ in a["ranked"]],
                "arm": [a.get("arm") or "control" for a in answers for _ in a["ranked"]],
                "experiment_id": [a.get("experiment_id") for a in answers for _ in a["ranked"]],
                "propensity": pa.nulls(len(ranked), pa.float64()),
                "explore": pa.array([bool(a.get("explore", False)) for a in answers for _ in a["ranked"]]),
            },
            schema=SERVED_SCHEMA,
        )

    def _from_log(self, requests: Requests) -> pa.Table:
        """The service's own served rows of these requests (it writes in the background: wait a little)."""
        wanted = pa.array(requests.request_id.tolist(), pa.string())
        deadline = time.monotonic() + self.log_wait_s
        while True:
            log = read_served(self.served_log)
            rows = log.filter(pc.is_in(log.column(C.REQUEST_ID), wanted))
            got = pc.count_distinct(rows.column(C.REQUEST_ID)).as_py() if rows.num_rows else 0
            if got == len(requests) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if got < len(requests):
            raise ServiceError(f"{self.served_log}: served log holds {got} of {len(requests)} requests "
                               f"after {self.log_wait_s:g} s (is the service writing there?)")
        return rows


def _at_request_times(served: pa.Table, requests: Requests) -> pa.Table:
    """Served rows with event_time set to their simulated request's time."""
    ids = pa.array(requests.request_id.tolist(), pa.string())
    idx = pc.index_in(served.column(C.REQUEST_ID), value_set=ids).to_numpy(zero_copy_only=False)
    times = pa.array(requests.time_us[idx.astype(np.int64)], pa.int64()).cast(C.TIMESTAMP)
    return served.set_column(served.schema.get_field_index(C.EVENT_TIME), C.EVENT_TIME, times)
