"""User errors print one `error:` line and exit 2, from every command (found by walking the typer app)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from dacdr.cli import app
from tests.code.test_cli import _root, _walk

BAD_DOMAIN = "Bad Name!"
# values for required options that are not paths; anything else required gets "x"
PLAIN_VALUES = {"domain": "books", "dt": "2026-01-01", "model": "dacdr-books:v1"}


def _is_path(param: TyperOption | TyperArgument) -> bool:
    """Whether a parameter is declared as a Path (a repeatable path option, list[Path], too)."""
    import typing
    from pathlib import PurePath

    desc = param.type_descriptor
    args = typing.get_args(desc.annotation)
    return bool(desc.is_path) or (bool(args) and all(isinstance(a, type) and issubclass(a, PurePath)
                                                     for a in args))


def _leaves() -> list[tuple[tuple[str, ...], object]]:
    """Every runnable (non-group) command below `dacdr`."""
    return [(path, cmd) for path, cmd in _walk(_root()) if not isinstance(cmd, TyperGroup)]


def _bad_args(cmd: object, bad_path: Path) -> tuple[list[str], set[str]]:
    """Arguments giving every path parameter `bad_path` (or, without one, a bad --domain); also the
    names an error line may cite: the options (or argument) that received a bad value."""
    positional, options, named = [], [], set()
    params = [p for p in cmd.params if isinstance(p, TyperOption | TyperArgument) and p.name != "help"]
    has_path = any(_is_path(p) for p in params)
    for p in params:
        if _is_path(p):
            value = str(bad_path)
        elif p.name == "domain" and not has_path:
            value = BAD_DOMAIN
        elif p.required:
            value = PLAIN_VALUES.get(p.name, "x")
        else:
            continue
        if isinstance(p, TyperArgument):
            positional.append(value)
            named.add(p.name.upper())
        else:
            options += [p.opts[0], value]
            if value in (str(bad_path), BAD_DOMAIN):
                named.add(p.opts[0])
    return [*options, *positional], named


@pytest.fixture()
def bad_path(tmp_path: Path) -> Path:
    """A path below a regular file: it does not exist and cannot be created."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    return afile / "missing"


def test_walk_finds_every_command() -> None:
    """The walk sees the commands of every stage, nested ones included (so the next test covers them)."""
    names = {" ".join(path) for path, _ in _leaves()}
    assert {"simulate", "import amazon", "validate", "features build", "features materialize", "train",
            "evaluate", "finetune", "package", "serve", "rollback", "pipeline"} <= names


@pytest.mark.parametrize("path", [p for p, _ in _leaves()], ids=" ".join)
def test_every_command_bad_input_is_one_line_exit_2(path: tuple[str, ...], bad_path: Path) -> None:
    """`dacdr <command>` given a bad path (or a bad domain name) prints exactly one line on stderr,
    `error: ...` naming the parameter, nothing on stdout, and exits 2."""
    cmd = dict(_leaves())[path]
    args, named = _bad_args(cmd, bad_path)
    assert named, f"`dacdr {' '.join(path)}` has neither a path parameter nor --domain to get wrong"
    res = CliRunner().invoke(app, [*path, *args])
    lines = res.stderr.splitlines()
    assert res.exit_code == 2, (path, args, res.output, repr(res.exception))
    assert len(lines) == 1 and lines[0].startswith("error: "), (path, res.stderr)
    assert any(name in lines[0] for name in named), (path, named, lines[0])
    assert res.stdout == "", (path, res.stdout)


@pytest.mark.parametrize("args", [
    ["train"],  # missing required options
    ["train", "--data", ".", "--out", ".", "--epochs", "0"],  # out of range
    ["--threads", "x", "simulate", "--out", "."],  # a top-level option
    ["no-such-command"],
    ["features", "build", "--logs", ".", "--bogus"],  # a nested group's command
])
def test_click_usage_errors_are_one_line(args: list[str]) -> None:
    """Click's own usage errors (before any command body runs) are one line too, with the help hint."""
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], res.stderr


def test_validate_missing_logs_and_bad_dt(tmp_path: Path) -> None:
    """A missing --logs says the folder does not exist and writes nothing into --out; a bad --dt
    says the expected format."""
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["validate", "--logs", str(tmp_path / "nope"), "--dt", "2026-01-01",
                                   "--out", str(out)])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: --logs {tmp_path / 'nope'}: folder does not exist"
    assert not out.exists()
    args = ["validate", "--logs", str(tmp_path), "--dt", "2026-13-01", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--dt '2026-13-01'" in res.stderr and "YYYY-MM-DD" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("args,expected", [
    (["--model", "nope"], "--model: unknown model 'nope'"),
    (["--device", "gpu"], "--device: device must be auto, cpu or cuda"),
])
def test_train_bad_model_or_device(tmp_path: Path, args: list[str], expected: str) -> None:
    """`dacdr train` names the bad --model / --device before reading any data."""
    data = tmp_path / "ds"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "run"), *args])
    assert res.exit_code == 2 and res.stderr.startswith(f"error: {expected}"), res.stderr
    assert len(res.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_user_error_outside_dacdr_group_is_one_line() -> None:
    """A stage's typer app run alone (torchrun's `python -m models.cli`) prints UserError the same way."""
    from models.cli import app as models_app

    args = ["evaluate", "--run", "/nonexistent/run", "--data", "/nonexistent/ds"]
    res = CliRunner().invoke(models_app, args)
    assert res.exit_code == 2
    assert res.stderr.splitlines() == ["error: --run /nonexistent/run: folder does not exist"]


def test_help_shows_no_type_beside_flags() -> None:
    """Flags (--help, --resume, --progress/--no-progress) are shown without a `<bool>` value."""
    res = CliRunner().invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    flags = [line for line in res.stdout.splitlines() if line.strip().startswith(("--help", "--resume"))]
    assert len(flags) == 2 and not any("<" in line for line in flags), flags
    assert "<bool>" not in res.stdout
    assert "--data <path>" in res.stdout  # value options still show their type



@pytest.mark.parametrize("dt", ["2026-13-01", "yesterday", "2026-09-01T10:00"])
def test_push_bad_day_is_one_line(tmp_path: Path, dt: str) -> None:
    """`dacdr features push --dt` takes a YYYY-MM-DD day; anything else is one error line, exit 2."""
    res = CliRunner().invoke(app, ["features", "push", "--logs", str(tmp_path), "--dt", dt])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines() == [f"error: --dt {dt!r}: expected YYYY-MM-DD"], res.stderr


def test_pipeline_stopped_by_a_data_gate_prints_one_line(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A day that fails validation stops `dacdr pipeline` with one `error:` line naming the expectation,
    exit 1, and no traceback (Prefect's console handler is quiet unless --verbose; the UI keeps them)."""
    import flows.pipeline
    from features.validation import ValidationFailed

    def failing_pipeline(**_: object) -> dict:
        raise ValidationFailed("impressions", "logs/impressions", "row_count_in_bounds", "3 rows")

    monkeypatch.setattr(flows.pipeline, "pipeline", failing_pipeline)
    monkeypatch.delenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", raising=False)
    res = CliRunner().invoke(app, ["pipeline", "--preset", "tiny", "--workdir", str(tmp_path / "w")])
    assert res.exit_code == 1, (res.output, repr(res.exception))
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == ["error: pipeline stopped, validation FAILED: impressions (logs/impressions): "
                     "expectation 'row_count_in_bounds' failed: 3 rows"], res.stderr
    import os

    assert os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "CRITICAL"
