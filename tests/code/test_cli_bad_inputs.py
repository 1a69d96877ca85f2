"""Bad tags and bad checkpoints: one `error:` line, exit 2, no traceback; a refused pickle says refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dacdr.cli import app


class _RunsCode:
    """A pickle that would run a shell command when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        """Remember the file the command would create."""
        self.marker = marker

    def __reduce__(self) -> tuple:
        """Unpickling calls os.system(touch marker)."""
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def _prefect_console_on_the_real_stderr() -> None:
    """Prefect's console log handler keeps the stream it was created with, which is an earlier
    CliRunner's (closed) stderr when another in-process command set Prefect's logging up; a stray record
    of a background Prefect thread would then land in this command's stderr as a 'Logging error'."""
    import logging
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.console.file = sys.__stderr__


def _one_error_line(res: object) -> str:
    """The single stderr line of a refused command (asserting exit 2, nothing else printed)."""
    lines = res.stderr.splitlines()
    assert res.exit_code == 2, (res.output, repr(res.exception))
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


@pytest.mark.parametrize("tag", ["dacdr-books:v1:x", "Bad Tag!", ":", "dacdr-books:"])
def test_malformed_model_tag_is_one_line(tag: str) -> None:
    """`dacdr rollout --model <malformed>` names --model and the tag in one line, exit 2."""
    args = ["rollout", "--domain", "books", "--model", tag, "--auc", "0.7", "--no-build"]
    res = CliRunner().invoke(app, args)
    line = _one_error_line(res)
    assert line.startswith(f"error: --model {tag!r}: "), line


def _run_with(tmp_path: Path, payload: bytes | None = None, obj: object = None) -> tuple[Path, Path]:
    """A run dir whose checkpoint.pt holds `payload` bytes (or torch.save(obj)), and a dataset dir."""
    run, data = tmp_path / "run", tmp_path / "ds"
    run.mkdir()
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    if obj is not None:
        torch.save(obj, run / "checkpoint.pt")
    else:
        (run / "checkpoint.pt").write_bytes(payload or b"")
    return run, data


def _evaluate(run: Path, data: Path) -> object:
    """`dacdr evaluate --run RUN --data DATA --device cpu`."""
    return CliRunner().invoke(app, ["evaluate", "--run", str(run), "--data", str(data), "--device", "cpu"])


def test_evaluate_on_an_empty_checkpoint_is_one_line(tmp_path: Path) -> None:
    """A 0-byte checkpoint.pt (an interrupted write): `damaged checkpoint (0 bytes ...)`, one line, exit 2."""
    run, data = _run_with(tmp_path, b"")
    line = _one_error_line(_evaluate(run, data))
    assert line.startswith(f"error: --run: {run / 'checkpoint.pt'}: damaged checkpoint (0 bytes"), line


@pytest.mark.parametrize("form", ["torch.save", "pickle protocol 4", "pickle protocol 0"])
def test_malicious_pickle_is_reported_refused_not_damaged(form: str, tmp_path: Path) -> None:
    """A checkpoint that would run code is refused by weights_only (nothing runs) and said so in one line:
    `refused`, never `damaged checkpoint`."""
    marker = tmp_path / "ran"
    evil = _RunsCode(marker)
    if form == "torch.save":
        run, data = _run_with(tmp_path, obj={"model": evil})
    else:
        run, data = _run_with(tmp_path, pickle.dumps(evil, protocol=int(form[-1])))
    line = _one_error_line(_evaluate(run, data))
    assert line.startswith(f"error: --run: {run / 'checkpoint.pt'}: refused: "), line
    assert "damaged" not in line
    assert not marker.exists()
