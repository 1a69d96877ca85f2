"""The `dacdr` command line: one command per stage, each defined beside the stage's code."""

from __future__ import annotations

import typer

from bento import cli as bento_cli
from features import cli_logs, cli_store, cli_validate
from flows import cli as flows_cli
from models import cli as models_cli
from models import cli_data as models_data_cli
from models import cli_experiments as models_experiments_cli

app = typer.Typer(
    name="dacdr",
    help="Cross-domain CTR recommendation (DACDR): logs -> validation -> features -> train -> serve.",
    no_args_is_help=True,
    add_completion=False,
)
# Each stage module owns a small typer app; its commands are merged at the top level here.
# Stage CLIs import their heavy dependencies (torch, feast, bentoml) inside the command bodies,
# so `dacdr --help` stays fast.


@app.callback()
def main(
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="CPU threads for torch, BLAS and duckdb in this process and its children "
             "(default: $DACDR_THREADS, else half the cores).",
    ),
) -> None:
    """Cross-domain CTR recommendation (DACDR): logs -> validation -> features -> train -> serve."""
    from dacdr import threads as threads_mod

    try:
        threads_mod.configure(threads)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--threads / $DACDR_THREADS") from exc


for sub in (
    cli_logs.app,
    cli_validate.app,
    cli_store.app,
    models_data_cli.app,
    models_cli.app,
    models_experiments_cli.app,
    bento_cli.app,
    flows_cli.app,
):
    app.add_typer(sub)


if __name__ == "__main__":
    app()
