"""`dacdr --help` lists every command, and every command, group and option has help text."""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from dacdr.cli import app


def _walk(group: TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every (path, command) below a typer group, groups included."""
    found = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        found.append((path, cmd))
        if isinstance(cmd, TyperGroup):
            found += _walk(cmd, path)
    return found


def _root() -> TyperGroup:
    """The click-level group behind `dacdr`."""
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    return root


def test_help_lists_every_command_with_help_text() -> None:
    """Top-level --help names each command; each (sub)command's own --help shows its help text."""
    commands = _walk(_root())
    names = {path[0] for path, _ in commands}
    assert {"simulate", "import", "check-logs"} <= names
    assert ("import", "amazon") in {path for path, _ in commands}
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for name in names:
        assert name in top.stdout, name
    for path, cmd in commands:
        text = (cmd.help or cmd.short_help or "").strip()
        assert text, f"`dacdr {' '.join(path)}` has no help text"
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert text.split()[0] in res.stdout, path


def test_every_option_has_help_text() -> None:
    """Each option/argument of each command documents itself."""
    params, missing = 0, []
    for path, cmd in _walk(_root()):
        for param in cmd.params:
            if isinstance(param, TyperOption | TyperArgument) and param.name != "help":
                params += 1
                if not (param.help or "").strip():
                    missing.append(f"dacdr {' '.join(path)} {param.name}")
    assert params >= 8  # simulate, import amazon and check-logs alone have 9
    assert missing == []
