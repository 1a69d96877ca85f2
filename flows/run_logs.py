"""What reaches a Prefect run's logs (the UI): the stage lines and the training epoch lines.

The terminal output of `dacdr pipeline` stays as it is (plain lines, printed by the CLI); these
records go to the Prefect API only, tagged with the flow or task run they are emitted in, so a
deployment run (no terminal) shows the same lines in the UI. Library INFO chatter is held back
from the terminal: Great Expectations sets one of its loggers to INFO itself, and under a Prefect
run that logger's "Created temporary directory ..." lines reached the console between stage lines.
"""

from __future__ import annotations

import logging

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

from models.run_dir import EPOCH_LOGGER

# the stage lines (`[  12.3s] features done in 4.5s`): flows.pipeline.StageClock logs them here
STAGE_LOGGER = "dacdr.stages"
# library loggers that set their own level to INFO when imported (so a level set here would not
# last): a filter keeps their records below WARNING from ever being handled
QUIET_LOGGERS = ("great_expectations.data_context.types.base",)

class RunLogHandler(APILogHandler):
    """Prefect's API log handler, only inside a flow or task run (elsewhere a record is not a run's)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Send the record to the current run's logs; outside any run, do nothing."""
        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            super().emit(record)


def send_to_run_logs(*names: str) -> None:
    """Make these loggers' INFO records part of the Prefect run they are emitted in (idempotent)."""
    for name in names:
        log = logging.getLogger(name)
        if not any(isinstance(h, RunLogHandler) for h in log.handlers):
            log.addHandler(RunLogHandler())
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)


def _warnings_and_above(record: logging.LogRecord) -> bool:
    """A logging filter: only WARNING and above pass."""
    return record.levelno >= logging.WARNING


def quiet_libraries() -> None:
    """The QUIET_LOGGERS print WARNING and above only, whatever level their library sets (idempotent)."""
    for name in QUIET_LOGGERS:
        log = logging.getLogger(name)
        if _warnings_and_above not in log.filters:
            log.addFilter(_warnings_and_above)


def configure_run_logs() -> None:
    """Stage and epoch lines to the run's logs; library chatter off the terminal (every flow calls it)."""
    stages = logging.getLogger(STAGE_LOGGER)
    stages.propagate = False  # the CLI prints the stage lines itself: not a second time via the root
    send_to_run_logs(STAGE_LOGGER, EPOCH_LOGGER)
    quiet_libraries()
