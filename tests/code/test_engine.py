"""The engine switch (dacdr.engine): names checked at the boundary, one-line errors, Ray optional."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dacdr import engine
from dacdr.cli import app
from dacdr.errors import UserError


def test_known_engines_pass_and_unknown_ones_are_named() -> None:
    """local and ray are accepted as given; anything else is a UserError listing both."""
    assert engine.check_engine("local") == "local"
    with pytest.raises(UserError, match=r"--engine 'dask': expected one of local, ray"):
        engine.check_engine("dask")


def test_ray_missing_is_one_line_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the ray package, `--engine ray` is one `error:` line naming the extra to install, exit 2."""
    monkeypatch.setattr(engine, "ray_installed", lambda: False)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{}")
    res = CliRunner().invoke(app, ["train", "--engine", "ray", "--data", str(tmp_path / "ds"),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == f"error: --engine ray: {engine.INSTALL_HINT}"
    with pytest.raises(RuntimeError, match="pip install 'dacdr\\[ray\\]'"):
        engine.init_ray()


def test_workers_must_be_positive() -> None:
    """A worker count below one is refused with the option's name."""
    assert engine.check_workers(3) == 3
    with pytest.raises(UserError, match="--workers -1: must be >= 1"):
        engine.check_workers(-1)


def test_ray_workers_run_one_thread() -> None:
    """Every Ray worker process starts with a one-thread budget (it holds one CPU)."""
    env = engine.worker_env()
    assert env["DACDR_THREADS"] == "1" and env["OMP_NUM_THREADS"] == "1"
