"""The online loop against a live service: `dacdr simulate-online` drives `bentoml serve`, logs land valid.

Needs the service side of the served log (request_id echoed, arm and experiment_id in responses);
against a service without it the test skips with that reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from features import contract as C
from features.io import check_contract, read_table
from features.served import read_served
from tests.serving.conftest import Served, run_cli


def _echoes_request_id(served: Served) -> bool:
    """Whether the service takes and echoes request_id (the served-log service)."""
    import httpx

    from features.simulator import ITEM_ID_BASE, USER_ID_BASE

    items = [ITEM_ID_BASE + 1, ITEM_ID_BASE + 2]
    body = {"user_id": USER_ID_BASE + 1, "item_ids": items, "request_id": "probe-1"}
    resp = httpx.post(f"{served.url}/rank", json=body, timeout=30)
    return resp.status_code == 200 and resp.json().get("request_id") == "probe-1"


def test_simulate_online_against_a_live_service(served: Served, tiny_logs: Path, tmp_path: Path) -> None:
    """One simulated day of 40 requests x 10 candidates: 400 served rows, impressions valid, clicks joined."""
    if not _echoes_request_id(served):
        pytest.skip("the service does not echo request_id yet (served-log service not merged)")
    zone = tmp_path / "zone"
    shutil.copytree(tiny_logs, zone)
    last = C.list_days(zone)[-1]
    proc = run_cli(["simulate-online", "--out", str(zone), "--service", f"{served.domain}={served.url}",
                    "--days", "1", "--seed", "3", "--requests-per-day", "40"], served.env())
    if proc.returncode != 0:
        pytest.fail(proc.stderr[-2000:])
    days = json.loads(proc.stdout[proc.stdout.index("["):])  # the command prints one indented JSON list
    assert len(days) == 1 and days[0]["requests"] == 40 and days[0]["impressions"] == 400
    new_day = C.list_days(zone)[-1]
    assert new_day > last
    check_contract(zone)
    imp = read_table(zone, C.IMPRESSIONS, new_day)
    assert imp.num_rows == 400
    served_rows = read_served(zone / "_online", [new_day])
    assert served_rows.num_rows == 400
    assert set(served_rows.column("model_tag").to_pylist()) == {served.model_tag}
    assert json.loads(json.dumps(days))  # the command's output is plain JSON
