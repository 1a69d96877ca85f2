"""CLI commands of this stage (merged into `dacdr` by dacdr/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from dacdr.engine import check_engine
from dacdr.errors import existing_dir, iso_day, output_dir, user_errors

app = typer.Typer()


@app.command("validate")
def validate(
    logs: Path = typer.Option(..., "--logs", help="Landing zone root (<table>/dt=YYYY-MM-DD/*.parquet|csv)."),
    dt: str = typer.Option(..., "--dt", help="The day to validate, YYYY-MM-DD."),
    out: Path = typer.Option(..., "--out", help="Output root: curated/, quarantine/, reports/, data_docs/."),
    count_low: float = typer.Option(0.2, help="Fail if the day's rows < this x the median of previous days."),
    count_high: float = typer.Option(5.0, help="Fail if the day's rows > this x that median."),
    count_window: int = typer.Option(7, help="How many previous accepted days make that median."),
    data_docs: bool = typer.Option(True, help="Render Great Expectations Data Docs under OUT/data_docs."),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process) or ray (row rules on Ray Data, $RAY_ADDRESS)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into --out even if dacdr did not make it."),
) -> None:
    """Validate one day with Great Expectations: good rows to curated/, bad rows to quarantine/."""
    from features.io import LAKE_OUTPUT, OutputRefused, prepare_output
    from features.suites import CountBounds
    from features.validation import ValidationConfig, ValidationFailed, validate_day

    # the inputs are checked before anything is written under --out
    existing_dir(logs, "--logs")
    iso_day(dt, "--dt")
    output_dir(out, "--out")
    with user_errors(OutputRefused, option="--out"):  # never write into a folder of the user's
        prepare_output(out, LAKE_OUTPUT, force)
    check_engine(engine)
    config = ValidationConfig(CountBounds(count_low, count_high, count_window), data_docs=data_docs,
                              engine=engine)
    try:
        summary = validate_day(logs, dt, out, config=config)
    except ValidationFailed as exc:
        typer.echo(f"validation of {dt} FAILED (nothing written to {out}/curated): {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(summary.render())
