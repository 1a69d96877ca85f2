"""The process thread budget (dacdr.threads): precedence, validation, and that torch obeys it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dacdr import threads


def test_precedence_argument_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit count beats $DACDR_THREADS, which beats half the cores."""
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.resolve(5) == 5
    assert threads.resolve() == 3
    monkeypatch.delenv(threads.ENV)
    assert threads.resolve() == threads.default_threads()
    assert 1 <= threads.default_threads() <= 8


def test_torchrun_processes_share_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun each local process gets its share, never less than one thread."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.default_threads() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.default_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert threads.default_threads() == 1


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_bad_env_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """A bad $DACDR_THREADS names the variable or the bound."""
    monkeypatch.setenv(threads.ENV, bad)
    with pytest.raises(ValueError, match="DACDR_THREADS|>= 1"):
        threads.resolve()


@pytest.mark.parametrize(("inherited", "wanted"), [(None, 1), ("1", 2)])
def test_configure_reaches_torch_imported_later_and_children(inherited: str | None, wanted: int) -> None:
    """torch imported after configure() runs with that many threads; the env carries it to children.

    torch caps OpenMP at the core count, so the expected count is min(wanted, cores).
    """
    env = {k: v for k, v in os.environ.items() if k not in (threads.ENV, *threads.BLAS_ENV)}
    if inherited is not None:
        env["OMP_NUM_THREADS"] = inherited
    code = (
        f"from dacdr.threads import configure; configure({wanted}); import os, torch; "
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['DACDR_THREADS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env).stdout
    expect = str(min(wanted, len(os.sched_getaffinity(0))))
    assert out.split() == [expect, str(wanted), str(wanted)]


def test_configure_resets_torch_already_imported() -> None:
    """A process that imported torch first is still set."""
    code = "import torch; from dacdr.threads import configure; configure(1); print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


def test_cli_threads_flag_validates() -> None:
    """`dacdr --threads 0` is a usage error (exit 2), not a traceback."""
    res = subprocess.run([sys.executable, "-m", "dacdr.cli", "--threads", "0", "simulate", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
