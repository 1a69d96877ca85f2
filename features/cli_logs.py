"""CLI of the logs stage: simulate, import amazon, check-logs (merged into `dacdr` by dacdr/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dacdr.errors import UserError, existing_dir, existing_file, output_dir, user_errors

app = typer.Typer()
import_app = typer.Typer(help="Import public data sets into the log contract.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@app.command("simulate")
def simulate_cmd(
    preset: str = typer.Option("tiny", help="Size preset: tiny (tests), demo (main job) or bench."),
    seed: int = typer.Option(0, help="Random seed; same seed, same bytes."),
    out: Path = typer.Option(..., help="Landing-zone folder to write (replaced atomically)."),
    n_targets: int = typer.Option(3, help="Number of target domains (1-5)."),
    force: bool = typer.Option(False, "--force", help="Replace --out even if dacdr did not write it."),
) -> None:
    """Simulate a multi-domain landing zone (source funnel, sparse target domains, onboarding domain)."""
    from features.contract import ContractError
    from features.io import LANDING_OUTPUT, OutputRefused, prepare_output
    from features.simulator import simulate, summary_dict

    output_dir(out, "--out")
    with user_errors(OutputRefused, option="--out"):  # a typo'd --out ~ must cost nobody their files
        prepare_output(out, LANDING_OUTPUT, force)
    with user_errors(ValueError, ContractError):
        summary = simulate(preset, seed=seed, out=out, n_targets=n_targets)
    typer.echo(json.dumps(summary_dict(summary), indent=1))


@import_app.command("amazon")
def import_amazon_cmd(
    source: Path = typer.Option(..., help="Source-category file (2014/2018 ratings CSV, 5-core JSON lines)."),
    target: Path = typer.Option(..., help="Target-category file, same formats."),
    out: Path = typer.Option(..., help="Landing-zone folder to write (nothing is written on error)."),
    fmt: str | None = typer.Option(
        None, "--format", help="Both files' format, overriding detection: 2014, 2018 or 5core."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out even if dacdr did not write it."),
) -> None:
    """Import Amazon review ratings: source category -> behaviors (rate), target -> impressions (rating)."""
    from dataclasses import asdict

    from features.contract import ContractError
    from features.importers import import_amazon
    from features.io import LANDING_OUTPUT, OutputRefused, prepare_output

    existing_file(source, "--source")
    existing_file(target, "--target")
    output_dir(out, "--out")
    with user_errors(OutputRefused, option="--out"):
        prepare_output(out, LANDING_OUTPUT, force)
    with user_errors(ContractError):
        summary = import_amazon(source, target, out, fmt)
    typer.echo(json.dumps({**asdict(summary), "out": str(summary.out)}, indent=1))


@import_app.command("amazon-sample")
def amazon_sample_cmd(
    out: Path = typer.Option(..., help="Folder for the (source, target) file pair."),
    seed: int = typer.Option(0, help="Random seed; same seed, same files."),
    users: int = typer.Option(400, min=3, help="Users rating the source category."),
    items: int = typer.Option(300, min=2, help="Items per category."),
    ratings_per_user: float = typer.Option(8.0, min=1.0, help="Mean ratings per user and category."),
    fmt: str = typer.Option("ratings2014", "--format", help="ratings2014, ratings2018 or 5core."),
) -> None:
    """Write a synthetic Amazon-format (source, target) pair (taste shared across the two categories)."""
    from features.amazon_synth import make_amazon_files

    output_dir(out, "--out")
    with user_errors(ValueError):
        src, tgt = make_amazon_files(out, seed, users, items, fmt, ratings_per_user)
    typer.echo(json.dumps({"source": str(src), "target": str(tgt)}, indent=1))


@app.command("check-logs")
def check_logs_cmd(
    root: Path = typer.Argument(..., help="Landing-zone folder to check."),
    tables: str = typer.Option(
        "impressions,behaviors,items,domains",
        help="Comma-separated tables to check (onboarding zone: a subset).",
    ),
) -> None:
    """Check a landing zone against the log contract; exit 1 naming the first bad file and problem."""
    from features.contract import TABLES, ContractError
    from features.io import check_contract

    existing_dir(root, "ROOT")
    names = tuple(t.strip() for t in tables.split(",") if t.strip())
    unknown = [t for t in names if t not in TABLES]
    if unknown or not names:
        raise UserError(f"--tables {tables!r}: expected a comma-separated subset of {', '.join(TABLES)}")
    try:
        rows = check_contract(root, names)
    except (ContractError, KeyError) as exc:
        typer.echo(f"contract violation: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(rows))
