"""CLI commands of the model stage: train, evaluate, finetune (merged into `dacdr` by dacdr/cli.py)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dacdr.errors import UserError, domain_name, folder_with, output_dir, user_errors

# plain click output as under `dacdr` (torchrun runs this app alone: `python -m models.cli train ...`)
app = typer.Typer(rich_markup_mode=None)


def _dataset(path: Path, option: str = "--data") -> Path:
    """`path` if it is a dataset folder (manifest.json beside the splits), else a UserError."""
    return folder_with(path, option, "manifest.json", "a dataset folder (made by `dacdr build-dataset`)")


def _run(path: Path, option: str) -> Path:
    """`path` if it is a trained run dir (holds checkpoint.pt), else a UserError."""
    from models.train import BEST

    return folder_with(path, option, BEST, "a trained run dir (made by `dacdr train`)")


def _device(device: str) -> str:
    """`device` if this machine has it (auto, cpu, cuda[:N]), else a UserError."""
    from models.predict import resolve_device

    with user_errors(ValueError, option="--device"):
        resolve_device(device)
    return device


def _is_rank0() -> bool:
    """Whether this process prints the summary (rank 0, or not under torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


CONFIG_HELP = ("YAML or TOML file of hyper-parameters: sections train (TrainConfig) and model (the model's "
               "config); flags override it; saved resolved as RUN/config.json.")


@app.command("train")
def train_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset dir (splits + manifest.json)."),
    out: Path = typer.Option(..., "--out", help="Run dir to write checkpoint.pt, last.pt, metrics.jsonl."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    model: str | None = typer.Option(
        None, "--model", help="Zoo model name (models.zoo.MODELS; default dacdr)."
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto (the default: cuda when present), cpu or cuda."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Maximum epochs (early stopping on validation; default 10)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Rows per step (per process under torchrun; default 1024)."
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="Learning rate (SparseAdam and AdamW; default 0.002)."
    ),
    patience: int | None = typer.Option(
        None, "--patience", min=1, help="Epochs without validation gain before stopping (default 1)."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of init, shuffling and everything else (default 0)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run from RUN_DIR/last.pt."),
    embed_dim: int | None = typer.Option(None, "--embed-dim", help="Embedding size k (default 32)."),
    attn_dim: int | None = typer.Option(None, "--attn-dim", help="Attention size (default 32)."),
    dropout: float | None = typer.Option(None, "--dropout", help="Dropout of the MLPs (default 0)."),
    max_batches: int | None = typer.Option(None, "--max-batches", min=1, help="Cap on steps per epoch."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show the tqdm bar within each epoch (epoch lines always)."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process, or torchrun's) or ray (Ray Train, $RAY_ADDRESS)."
    ),
    workers: int = typer.Option(
        2, "--workers", help="Ray Train workers (--engine ray): one process and one CPU or GPU each."
    ),
) -> None:
    """Train a model on a dataset dir (one line per epoch, then a summary); works under torchrun (DDP)."""
    from dacdr.engine import RAY, check_engine, check_workers
    from models.cli_config import hyper_fields, read_config, resolve, save_config, train_fields
    from models.run import train
    from models.run_dir import echo_progress, epoch_lines, summarize_run
    from models.train import TrainConfig
    from models.zoo import get_entry

    _dataset(data)
    output_dir(out, "--out")
    sections = read_config(config) if config is not None else {"train": {}, "model": {}}
    allowed = train_fields(TrainConfig)
    if "model" in sections["train"] and model is None:
        model = sections["train"]["model"]
    model = model or TrainConfig.model
    with user_errors(ValueError, option="--model"):
        entry = get_entry(str(model))
    flags = {"model": model, "device": device, "seed": seed, "epochs": epochs, "batch_size": batch_size,
             "lr": lr, "patience": patience, "max_batches_per_epoch": max_batches,
             "embed_dim": embed_dim, "attn_dim": attn_dim, "dropout": dropout}
    hp, overrides = resolve(sections, flags, allowed, vars(TrainConfig()), hyper_fields(entry.config_cls),
                            entry.fixed)
    device = hp["device"]
    check_engine(engine)
    if engine == RAY:
        check_workers(workers)
        if device not in ("auto", "cpu", "cuda"):  # the workers' GPUs, not this machine's, decide
            raise UserError(f"--device {device!r}: with --engine ray, expected auto, cpu or cuda")
    else:
        _device(device)
    args = {k: hp[k] for k in ("model", "device", "seed", "epochs", "batch_size", "lr", "patience",
                               "weight_decay", "eval_batch_size")}
    if engine == RAY:
        from models.ray_train import TrainArgs, train_on_ray

        typer.echo(f"training on {workers} Ray Train worker(s)")
        run = train_on_ray(TrainArgs(str(data), str(out), **args, resume=resume, model_overrides=overrides,
                                     max_batches_per_epoch=hp["max_batches_per_epoch"]), workers)
        save_config(run, hp, _model_config(run, entry.config_cls))
        for line in epoch_lines(run, hp["model"], hp["epochs"]):  # the workers' lines stay in their Ray logs
            typer.echo(line)
        typer.echo(summarize_run(run, hp["epochs"], hp["patience"]).render())
        return
    if _is_rank0():
        echo_progress()
    run = train(data, out, **args, resume=resume, model_overrides=overrides,
                max_batches_per_epoch=hp["max_batches_per_epoch"], progress=progress)
    if _is_rank0():
        save_config(run, hp, _model_config(run, entry.config_cls))
        typer.echo(summarize_run(run, hp["epochs"], hp["patience"]).render())


def _model_config(run: Path, config_cls: type) -> dict:
    """The model config a finished run saved (its hyper-parameter fields), for RUN/config.json."""
    from models.cli_config import model_config_of

    return model_config_of(run, config_cls)


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Option(..., "--run", help="Run dir holding checkpoint.pt."),
    data: Path = typer.Option(..., "--data", help="Dataset dir to score."),
    split: str = typer.Option("test", "--split", help="train, validation or test."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Evaluate a run per domain and overall (all / cold / warm users); writes RUN/eval_<split>.json."""
    from models.checkpoint import CheckpointError
    from models.evaluate import eval_path, evaluate, format_table
    from models.train import SPLITS

    _run(run, "--run")
    _dataset(data)
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    _device(device)
    with user_errors(CheckpointError, option="--run"):  # 0 bytes, truncated, or refused by weights_only
        result = evaluate(run, data, split=split, device=device)
    typer.echo(format_table(result))
    typer.echo(f"wrote {eval_path(run, split)}")


# what fine-tuning takes from --config (the base run fixes the model) and its own defaults
FINETUNE_FIELDS = ("device", "seed", "epochs", "batch_size", "lr", "patience", "max_batches_per_epoch")
FINETUNE_DEFAULTS = {"batch_size": 256, "patience": 2}


@app.command("finetune")
def finetune_cmd(
    base: Path = typer.Option(..., "--base", help="Trained DACDR run dir (its checkpoint.pt)."),
    domain: str = typer.Option(..., "--domain", help="The new target domain to fine-tune on."),
    data: Path = typer.Option(..., "--data", help="Dataset dir of the new domain."),
    out: Path = typer.Option(..., "--out", help="Run dir of the fine-tuned model."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML or TOML file with a train section (epochs, batch_size, lr, patience, "
                               "seed, device); flags override it; saved resolved as RUN/config.json."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Maximum epochs (early stopping on validation; default 10)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rows per step (default 256)."),
    patience: int | None = typer.Option(
        None, "--patience", min=1, help="Epochs without validation gain before stopping (default 2)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default 0.002)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (default 0)."),
    device: str | None = typer.Option(None, "--device", help="auto (the default), cpu or cuda."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show the tqdm bar within each epoch (epoch lines always)."
    ),
) -> None:
    """Fine-tune e_d, target item embeddings and attention W^Q/W^K/W^V on a new domain (rest frozen)."""
    from models.checkpoint import CheckpointError
    from models.cli_config import read_config, resolve, save_config, train_fields
    from models.finetune import finetune
    from models.run_dir import echo_progress, summarize_run
    from models.spec import manifest_domains, read_manifest
    from models.train import TrainConfig

    _run(base, "--base")
    domain_name(domain)
    _dataset(data)
    with user_errors(ValueError, option="--data"):
        known = manifest_domains(read_manifest(data))
    if domain not in known:
        raise UserError(f"--domain {domain!r}: not in {data}/manifest.json (has {', '.join(sorted(known))})")
    output_dir(out, "--out")
    sections = read_config(config) if config is not None else {"train": {}, "model": {}}
    flags = {"device": device, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
             "patience": patience}
    hp, _ = resolve(sections, flags, train_fields(TrainConfig, FINETUNE_FIELDS),
                    {**vars(TrainConfig()), **FINETUNE_DEFAULTS}, None)
    _device(hp["device"])
    echo_progress()
    with user_errors(CheckpointError, option="--base"):
        run = finetune(base, domain, data, out, **hp, progress=progress)
    save_config(run, hp, {})
    typer.echo(summarize_run(run, hp["epochs"], hp["patience"]).render())


if __name__ == "__main__":  # `torchrun --nproc_per_node=N -m models.cli train ...`
    from dacdr.threads import configure

    configure()  # each of torchrun's N processes: $DACDR_THREADS, else its share of half the cores
    app()
