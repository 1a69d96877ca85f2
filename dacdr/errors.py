"""User errors: one `error: <message>` line on stderr and exit status 2, never a traceback.

Stage and CLI code raise UserError for mistakes in what the user typed (a missing folder, an
unknown model, a bad device); it is a (typer's) click exception, so every `dacdr` command (and any typer
app run standalone, e.g. `python -m models.cli` under torchrun) prints it as one line and exits 2.
Everything else keeps its traceback. The path checks below are what the commands run at their
boundary, so each message names the option it is about.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import typer

try:  # typer >= 0.2x carries its own copy of click; its commands catch that copy's exceptions
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException, UsageError

    NoArgsIsHelpError = ()  # type: ignore[assignment,misc]  # click < 8.2 shows the help itself

USAGE_EXIT = 2


class UserError(ClickException):
    """A mistake in the command line or its inputs: printed as one `error:` line, exit status 2."""

    exit_code = USAGE_EXIT

    def __init__(self, message: str) -> None:
        """Keep the message on one line (multi-line causes are joined with spaces)."""
        super().__init__(" ".join(str(message).split()))

    def show(self, file: IO[Any] | None = None) -> None:
        """Print `error: <message>` as a single line on stderr."""
        typer.echo(f"error: {self.format_message()}", file=file, err=file is None)


@contextmanager
def user_errors(*types: type[BaseException], option: str | None = None) -> Iterator[None]:
    """Re-raise the given exception types from the block as UserError (prefixed with `option`)."""
    try:
        yield
    except types as exc:
        raise UserError(f"{option}: {exc}" if option else str(exc)) from exc


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Click's usage errors (missing option, bad value, unknown command) as one UserError line."""
    try:
        yield
    except UsageError as exc:
        if isinstance(exc, NoArgsIsHelpError):
            raise  # `dacdr features` alone shows the group's help, as asked
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
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
