"""User errors: one `error: <message>` line on stderr and exit status 2, never a traceback.

Stage and CLI code raise UserError for mistakes in what the user typed (a missing folder, an
unknown model, a bad device); it is a typer.BadParameter (typer's public usage error, exit 2), so
every `dacdr` command (and any typer app run standalone, e.g. `python -m models.cli` under
torchrun) prints it as one line and exits 2. Everything else keeps its traceback. The path checks
below are what the commands run at their boundary, so each message names the option it is about.
Only typer's public API is used: typer carries its own copy of click, and click's own exception
classes are not the ones typer's commands catch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import typer

USAGE_EXIT = 2


class UserError(typer.BadParameter):
    """A mistake in the command line or its inputs: printed as one `error:` line, exit status 2."""

    exit_code = USAGE_EXIT

    def __init__(self, message: str) -> None:
        """Keep the message on one line (multi-line causes are joined with spaces)."""
        super().__init__(" ".join(str(message).split()))

    def format_message(self) -> str:
        """The message itself (no `Invalid value:` prefix: it already names the option)."""
        return self.message

    def show(self, file: IO[Any] | None = None) -> None:
        """Print `error: <message>` as a single line on stderr."""
        typer.echo(f"error: {self.format_message()}", file=file, err=file is None)


def _usage_error(exc: typer.TyperException) -> bool:
    """Whether `exc` is one of typer's usage errors (bad option, missing value, unknown command)."""
    return getattr(exc, "exit_code", None) == USAGE_EXIT and hasattr(exc, "ctx")


def _help_request(exc: typer.TyperException) -> bool:
    """Whether `exc` is the usage error typer raises to show a group's help (`dacdr features` alone)."""
    ctx = getattr(exc, "ctx", None)
    return ctx is not None and exc.format_message() == ctx.get_help()


@contextmanager
def user_errors(*types: type[BaseException], option: str | None = None) -> Iterator[None]:
    """Re-raise the given exception types from the block as UserError (prefixed with `option`)."""
    try:
        yield
    except types as exc:
        raise UserError(f"{option}: {exc}" if option else str(exc)) from exc


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """typer's usage errors (missing option, bad value, unknown command) as one UserError line."""
    try:
        yield
    except UserError:
        raise
    except typer.TyperException as exc:
        if not _usage_error(exc) or _help_request(exc):
            raise  # `dacdr features` alone shows the group's help, as asked
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        raise UserError(f"{exc.format_message()}{hint}") from exc


def existing_dir(path: Path, option: str) -> Path:
    """`path` if it is an existing folder, else UserError naming `option`."""
    if not path.exists():
        raise UserError(f"{option} {path}: folder does not exist")
    if not path.is_dir():
        raise UserError(f"{option} {path}: not a folder")
    return path


def folder_with(path: Path, option: str, name: str, what: str) -> Path:
    """`path` if it is an existing folder holding `name`, else UserError saying it is not `what`."""
    existing_dir(path, option)
    if not (path / name).exists():
        raise UserError(f"{option} {path}: no {name}, not {what}")
    return path


def existing_file(path: Path, option: str) -> Path:
    """`path` if it is an existing file, else UserError naming `option`."""
    if not path.exists():
        raise UserError(f"{option} {path}: file does not exist")
    if not path.is_file():
        raise UserError(f"{option} {path}: not a file")
    return path


def output_dir(path: Path, option: str) -> Path:
    """`path` if it is a folder or could be created as one, else UserError naming `option`."""
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{option} {path}: exists and is not a folder")
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: cannot be created, {parent} is not a folder")
    return path


def domain_name(name: str, option: str = "--domain") -> str:
    """`name` if it is a valid domain name (features.contract's rule), else UserError naming `option`."""
    from features.contract import DOMAIN_NAME_PATTERN, is_valid_domain_name

    if not is_valid_domain_name(name):
        raise UserError(f"{option} {name!r}: not a domain name (must match {DOMAIN_NAME_PATTERN})")
    return name


def iso_day(value: str, option: str) -> str:
    """`value` if it is a calendar day written YYYY-MM-DD, else UserError naming `option`."""
    from datetime import date

    try:
        if len(value) == 10:
            date.fromisoformat(value)
            return value
    except ValueError:
        pass
    raise UserError(f"{option} {value!r}: expected a calendar day as YYYY-MM-DD, e.g. 2026-01-31")
