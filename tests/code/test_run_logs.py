"""Stage and epoch lines reach the Prefect run's logs (what the UI shows); library INFO chatter stays off
the terminal."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from uuid import UUID

import pytest

GX_LOGGER = "great_expectations.data_context.types.base"
EPOCH_LINE = "dacdr epoch 1/1: 1,000 samples/s, train loss 0.5000, val mean_domain_auc 0.6000 (best)"


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    """A temporary Prefect API for this module."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        yield


def _run_lines(flow_run_id: UUID) -> list[str]:
    """The messages the Prefect API holds for a flow run (its task runs' included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the handler sends in batches: wait for them
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def test_stage_and_epoch_lines_reach_the_run_logs(harness: None, capsys: pytest.CaptureFixture) -> None:
    """A flow's StageClock lines and the trainer's epoch line (logged from a task) are in the run's
    logs; the stage lines are printed once on stdout, as before."""
    from prefect import flow, task
    from prefect.runtime import flow_run

    from flows.pipeline import StageClock
    from flows.run_logs import configure_run_logs

    @task
    def train_epoch() -> None:
        logging.getLogger("models.train").info("  %s", EPOCH_LINE)

    @flow(name="run-logs-probe")
    def probe() -> str:
        configure_run_logs()
        clock = StageClock()
        with clock.stage("train"):
            train_epoch()
        return flow_run.id

    run_id = UUID(probe())
    lines = _run_lines(run_id)
    assert any(line.endswith("] train ...") for line in lines), lines
    assert any("] train done in" in line for line in lines), lines
    assert any(EPOCH_LINE in line for line in lines), lines
    out = capsys.readouterr().out
    assert out.count("] train ...") == 1  # printed once: not again through a logging handler


def test_library_info_chatter_stays_off_the_terminal() -> None:
    """Great Expectations sets its data-context logger to INFO on import; its INFO lines (temporary
    directories) never reach a console handler, its warnings still do."""
    from flows.run_logs import quiet_libraries

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        gx = logging.getLogger(GX_LOGGER)
        gx.setLevel(logging.INFO)  # what GX does when imported
        quiet_libraries()
        quiet_libraries()  # idempotent
        gx.info("Created temporary directory '/tmp/x' for ephemeral docs site")
        gx.warning("a real warning")
    finally:
        root.removeHandler(handler)
    assert stream.getvalue() == "a real warning\n"
