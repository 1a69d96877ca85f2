"""Fixtures of the flow tests: one Prefect test harness and one tiny end-to-end pipeline run.

The main job on the `tiny` preset runs ONCE per session (through the real `dacdr pipeline` CLI
command, under prefect_test_harness); the other tests inspect or extend its workdir.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TINY_EPOCHS = 1  # one epoch already ranks clearly better than chance on tiny; keeps the module fast


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API + SQLite database for the session (generous startup on busy CI)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        yield


@dataclass(frozen=True)
class PipelineRun:
    """The tiny pipeline's workdir, its printed output and its JSON summary."""

    workdir: Path
    output: str
    summary: dict[str, Any]


@pytest.fixture(scope="session")
def tiny_pipeline(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """`dacdr pipeline --preset tiny` end to end (simulate ... onboard ... smoke request)."""
    from typer.testing import CliRunner

    from dacdr.cli import app

    workdir = tmp_path_factory.mktemp("flows") / "work"
    # BentoML fixes its home on first use in a process; this session's store is the workdir's
    # unless another test module already chose one (the flows then use that one consistently).
    os.environ.setdefault("BENTOML_HOME", str(workdir / "bentoml"))
    args = ["pipeline", "--preset", "tiny", "--workdir", str(workdir), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--epochs", str(TINY_EPOCHS)])
    if result.exit_code != 0:
        msg = f"dacdr pipeline failed ({result.exit_code}):\n{result.output}"
        raise AssertionError(msg) from result.exception
    summary = json.loads((workdir / "pipeline_summary.json").read_text())
    return PipelineRun(workdir.resolve(), result.output, summary)
