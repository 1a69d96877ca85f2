"""CLI commands of this stage (merged into `dacdr` by dacdr/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from dacdr.engine import check_engine
from dacdr.errors import existing_dir, output_dir, user_errors

app = typer.Typer()


@app.command("build-dataset")
def build_dataset_cmd(
    logs: Path = typer.Option(..., "--logs", help="Landing (or curated) zone root to read."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder for train/validation/test.parquet + manifest.json."
    ),
    max_len: int = typer.Option(50, "--max-len", min=1, help="Keep the last N source behaviours per type."),
    test_days: int = typer.Option(
        1, "--test-days", min=1, help="Number of last days used as the test split."
    ),
    val_days: int = typer.Option(
        1, "--val-days", min=0, help="Number of days before test used for validation."
    ),
    base_logs: Path | None = typer.Option(
        None, "--base-logs", help="Main zone supplying behaviors/items/source domain for an onboarding zone."
    ),
    burn_in_days: int = typer.Option(
        0, "--burn-in-days", min=0,
        help="First impression days kept out of training: they only let source histories grow.",
    ),
    resolution: str = typer.Option(
        "day", "--sequence-resolution",
        help="Row histories as of the row's day (day: what nightly materialization serves) or "
             "its own event time (event: what serving sees with same-day `features push`).",
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process) or ray (sequences on Ray Data, $RAY_ADDRESS)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out even if dacdr did not write it."),
) -> None:
    """Build the training table (one row per target impression) and write its time-based splits."""
    import json

    from features.contract import ContractError
    from features.dataset import MANIFEST, build_dataset
    from features.io import DATASET_OUTPUT, OutputRefused, prepare_output

    existing_dir(logs, "--logs")
    if base_logs is not None:
        existing_dir(base_logs, "--base-logs")
    output_dir(out, "--out")
    with user_errors(OutputRefused, option="--out"):  # never replace a folder dacdr did not make
        prepare_output(out, DATASET_OUTPUT, force)
    check_engine(engine)
    with user_errors(ContractError, ValueError):  # data that cannot make a dataset, e.g. too few days
        path = build_dataset(
            logs, out, max_len=max_len, test_days=test_days, val_days=val_days, base_logs=base_logs,
            burn_in_days=burn_in_days, resolution=resolution, engine=engine,
        )
    manifest = json.loads((path / MANIFEST).read_text())
    rows = ", ".join(f"{k}={v}" for k, v in manifest["rows"].items())
    typer.echo(f"wrote {path}: {rows}")
