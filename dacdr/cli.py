"""The `dacdr` command line: one command per stage, each defined beside the stage's code."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from bento import cli as bento_cli
from bento import cli_ab as bento_ab_cli
from dacdr.errors import one_line_usage_errors
from features import cli_logs, cli_store, cli_validate
from flows import cli as flows_cli
from models import cli as models_cli
from models import cli_data as models_data_cli
from models import cli_experiments as models_experiments_cli


class DacdrGroup(TyperGroup):
    """The root group: click's usage errors of any command print as one `error:` line (exit 2)."""

    def make_context(self, *args: object, **kwargs: object) -> typer.Context:
        """Parse the top-level options (`--threads x`) with one-line usage errors."""
        with one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context) -> object:
        """Run the callback and the subcommand (whose own parsing happens here) likewise."""
        with one_line_usage_errors():
            return super().invoke(ctx)


app = typer.Typer(
    name="dacdr",
    cls=DacdrGroup,
    help="Cross-domain CTR recommendation (DACDR): logs -> validation -> features -> train -> serve.",
    no_args_is_help=True,
    add_completion=False,
    # click's plain help: typer's rich panels label every flag, --help included, as `<bool>`
    rich_markup_mode=None,
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
    bento_ab_cli.app,
    flows_cli.app,
):
    app.add_typer(sub)


if __name__ == "__main__":
    app()
