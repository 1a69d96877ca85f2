"""`daily` with engine=ray and runner=ray: its validation and featurization tasks run on Ray (prefect-ray's
RayTaskRunner over the suite's one Ray instance) and write what the local engine wrote."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from flows.common import Layout

from .conftest import PipelineRun
from .test_flows import tree_digest


def test_task_runner_names() -> None:
    """thread and ray are the runners; anything else is refused by name."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.common import task_runner

    assert isinstance(task_runner("thread"), ThreadPoolTaskRunner)
    with pytest.raises(ValueError, match="runner 'dask': expected one of thread, ray"):
        task_runner("dask")


def test_daily_on_ray_writes_what_local_wrote(ray_session: str, tiny_pipeline: PipelineRun) -> None:
    """daily(engine=ray, runner=ray) on a day the local engine processed (the session's pipeline): same
    validation report, same curated files, same sequence snapshots."""
    from prefect_ray import RayTaskRunner

    from features.feature_repo.sources import USER_SEQUENCES_FILE
    from features.store import data_dir
    from flows.common import task_runner
    from flows.daily import daily

    assert isinstance(task_runner("ray"), RayTaskRunner)
    layout = Layout.of(tiny_pipeline.workdir)
    day = tiny_pipeline.summary["days"][-1]  # the pipeline's last day (the closing A/B's days come after)
    local = json.loads((layout.lake / "reports" / f"dt={day}.json").read_text())  # the local engine's
    curated = tree_digest(layout.curated)
    # snapshots are built from the whole curated zone, which holds the closing A/B's days too (ingested
    # after the pipeline's features stage): the local reference is rebuilt from the same zone first
    from datetime import date, timedelta

    from flows.featurize import features

    end = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    features(str(layout.root), end=end, engine="local")
    snapshots = pq.read_table(data_dir(layout.feast) / USER_SEQUENCES_FILE)
    on_ray = daily(str(layout.logs), str(layout.root), dt=day, retrain=False, engine="ray", runner="ray")
    assert on_ray["validation"]["tables"] == local["tables"] and local["status"] == "ok"
    assert tree_digest(layout.curated) == curated
    assert pq.read_table(data_dir(layout.feast) / USER_SEQUENCES_FILE).equals(snapshots)
    assert snapshots.num_rows > 0
