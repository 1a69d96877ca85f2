"""CLI of the paper's experiments: `dacdr experiment multidomain|coldstart` (merged by dacdr/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()
experiment = typer.Typer(help="The paper's experiments: multi-domain CTR (Table 2), cold-start (Table 3).",
                         no_args_is_help=True)
app.add_typer(experiment, name="experiment")

EPOCHS_HELP = "Epochs per model (default 10; --quick: 3)."
QUICK_HELP = "CI-sized budget: 3 epochs of <= 400 batches of 512, no grid search."
MAX_BATCHES_HELP = "Cap on batches per epoch for every model (default: none; --quick: 400)."
PATIENCE_HELP = "Epochs without validation gain before a fit stops (default 2; --quick: 1)."
STEPS_HELP = ("Optimiser steps per fit; epochs are derived from each fit's rows (overrides --epochs), so "
              "small training sets are not starved.")
SEEDS_HELP = "Number of seeds (0..N-1) per model."

# the options every experiment takes: the flag, type and help of each stated once
Quick = Annotated[bool, typer.Option("--quick", help=QUICK_HELP)]
Models = Annotated[list[str] | None, typer.Option("--model", help="Only these models (repeatable).")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")]
Epochs = Annotated[int | None, typer.Option("--epochs", help=EPOCHS_HELP)]
Steps = Annotated[int | None, typer.Option("--steps", help=STEPS_HELP)]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Rows per batch (default 1024).")]
MaxBatches = Annotated[int | None, typer.Option("--max-batches-per-epoch", help=MAX_BATCHES_HELP)]
Lr = Annotated[float | None, typer.Option("--lr", help="Learning rate of every model.")]
Tune = Annotated[bool | None, typer.Option("--tune/--no-tune", help="Grid search on validation.")]
Patience = Annotated[int | None, typer.Option("--patience", help=PATIENCE_HELP)]


def budget(quick: bool, device: str, epochs: int | None, batch_size: int | None, max_batches: int | None,
           lr: float | None, tune: bool | None, steps: int | None = None,
           patience: int | None = None):  # -> ExperimentConfig
    """The shared budget: --quick or the full default, with any explicitly given field overriding it."""
    from dataclasses import replace

    from models.experiments import ExperimentConfig, quick_config

    cfg = quick_config(device) if quick else ExperimentConfig(device=device)
    given = {"epochs": epochs, "batch_size": batch_size, "max_batches_per_epoch": max_batches, "lr": lr,
             "tune": tune, "max_steps": steps, "patience": patience}
    return replace(cfg, **{k: v for k, v in given.items() if v is not None})


@experiment.command("multidomain")
def multidomain_cmd(
    logs: Path = typer.Option(..., "--logs", help="Landing zone (e.g. `dacdr simulate` output)."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv, report.md, chart.png, manifests."),
    seeds: int = typer.Option(3, "--seeds", help=SEEDS_HELP),
    quick: Quick = False,
    model: Models = None,
    device: Device = "cpu",
    epochs: Epochs = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    max_batches: MaxBatches = None,
    lr: Lr = None,
    tune: Tune = None,
    patience: Patience = None,
    burn_in_days: int = typer.Option(
        0, "--burn-in-days", min=0,
        help="First impression days kept out of training (they only let source histories grow).",
    ),
    resolution: str = typer.Option(
        "day", "--sequence-resolution", help="Row histories as of the row's day (day) or event time (event)."
    ),
) -> None:
    """Train every baseline, DACDR and its ablations on every target domain; report test AUC."""
    from dataclasses import replace

    from dacdr.errors import existing_dir, output_dir, user_errors
    from features.contract import ContractError
    from models.experiments import multidomain

    existing_dir(logs, "--logs")
    output_dir(out, "--out")
    cfg = replace(budget(quick, device, epochs, batch_size, max_batches, lr, tune, steps, patience),
                  burn_in_days=burn_in_days, sequence_resolution=resolution)
    with user_errors(ContractError, ValueError, FileNotFoundError):  # one `error:` line, exit 2
        res = multidomain(logs, out, seeds=seeds, quick=quick, models=model or None, cfg=cfg)
    typer.echo(f"wrote {out}/results.csv ({len(res)} rows), {out}/report.md, {out}/chart.png")


@experiment.command(
    "coldstart", context_settings={"allow_extra_args": True, "ignore_unknown_options": False}
)
def coldstart_cmd(
    ctx: typer.Context,
    source: Path | None = typer.Option(None, "--source", help="Amazon file of the source category."),
    target: Path | None = typer.Option(None, "--target", help="Amazon file of the target category."),
    logs: Path | None = typer.Option(None, "--logs", help="A rating landing zone (`dacdr import "
                                     "interactions`) instead of --source/--target."),
    beta: list[float] = typer.Option(
        [0.2, 0.5, 0.8], "--beta", help="Cold-start share(s) of overlapping users: --beta 0.2 0.5 0.8."
    ),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds (0..N-1) per model and beta."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv, report.md, split manifests."),
    fmt: str | None = typer.Option(None, "--format", help="Both files' format: 2014, 2018 or 5core."),
    quick: Quick = False,
    model: Models = None,
    device: Device = "cpu",
    epochs: Epochs = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    max_batches: MaxBatches = None,
    lr: Lr = None,
    tune: Tune = None,
    patience: Patience = None,
    source_history: str = typer.Option(
        "as-of", "--source-history",
        help="Target rows see source ratings before their time (as-of, as serving) or all of them (full).",
    ),
    resolution: str = typer.Option(
        "event", "--sequence-resolution", help="as-of cut at the row's event time (event) or day (day)."
    ),
) -> None:
    """Cold-start rating transfer: CMF, EMCDR, SSCDR, PTUPCDR, DACDR and the rating baselines."""
    from dacdr.errors import UserError, existing_dir, existing_file, output_dir, user_errors
    from features.contract import ContractError
    from models.experiments import coldstart

    if logs is not None:
        if source is not None or target is not None:
            raise UserError("--logs replaces --source/--target: give one or the other")
        existing_dir(logs, "--logs")
    elif source is None or target is None:
        raise UserError("give --source and --target (Amazon files), or --logs (a rating landing zone)")
    else:
        existing_file(source, "--source")
        existing_file(target, "--target")
    output_dir(out, "--out")

    # `--beta 0.2 0.5 0.8`: typer options take one value each, the rest arrive as extra arguments
    betas = list(beta)
    for extra in ctx.args:
        try:
            betas.append(float(extra))
        except ValueError as exc:
            typer.echo(f"error: unexpected argument {extra!r} (only --beta takes several values)", err=True)
            raise typer.Exit(code=2) from exc
    cfg = budget(quick, device, epochs, batch_size, max_batches, lr, tune, steps, patience)
    with user_errors(ContractError, ValueError, FileNotFoundError):  # one `error:` line, exit 2
        res = coldstart(source, target, out, betas, seeds=seeds, quick=quick, models=model or None, cfg=cfg,
                        fmt=fmt, source_history=source_history, logs=logs, resolution=resolution)
    typer.echo(f"wrote {out}/results.csv ({len(res)} rows), {out}/report.md, {out}/chart.png")


@experiment.command("ranking")
def ranking_cmd(
    logs: Path = typer.Option(..., "--logs", help="Implicit zone (`dacdr import c2dsr|interactions`)."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv, report.md, predictions/."),
    seeds: int = typer.Option(3, "--seeds", help=SEEDS_HELP),
    quick: Quick = False,
    model: Models = None,
    device: Device = "cpu",
    epochs: Epochs = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    max_batches: MaxBatches = None,
    lr: Lr = None,
    tune: Tune = None,
    patience: Patience = None,
) -> None:
    """Leave-last-out ranking (AUC, GAUC, NDCG@10, HR@10) of every model on an implicit zone."""
    from dataclasses import replace

    from dacdr.errors import existing_dir, output_dir, user_errors
    from features.contract import ContractError
    from models.experiments import leave_last_out

    existing_dir(logs, "--logs")
    output_dir(out, "--out")
    cfg = replace(budget(quick, device, epochs, batch_size, max_batches, lr, tune, steps, patience),
                  sequence_resolution="event")
    with user_errors(ContractError, ValueError, FileNotFoundError):  # one `error:` line, exit 2
        res = leave_last_out(logs, out, seeds=seeds, quick=quick, models=model or None, cfg=cfg)
    typer.echo(f"wrote {out}/results.csv ({len(res)} rows), {out}/report.md")


@experiment.command("compare")
def compare_cmd(
    run: list[Path] = typer.Option(..., "--run", help="multidomain out dirs of one zone (repeatable)."),
    reference: str = typer.Option("dacdr", "--reference", help="Model every other model is compared with."),
    draws: int = typer.Option(100, "--draws", min=10, help="Bootstrap draws."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
) -> None:
    """Paired bootstrap over test users: each model's mean-over-domains test AUC minus the reference's."""
    from dacdr.errors import existing_dir
    from models.experiments.significance import compare

    for r in run:
        existing_dir(r, "--run")
    try:
        rows = compare(list(run), reference, draws=draws, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    for row in rows:
        typer.echo(row.line())
