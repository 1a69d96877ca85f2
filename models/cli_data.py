"""CLI commands of this stage (merged into `dacdr` by dacdr/cli.py)."""

from __future__ import annotations

import typer

app = typer.Typer()
