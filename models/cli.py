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


@app.command("train")
def train_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset dir (splits + manifest.json)."),
    out: Path = typer.Option(..., "--out", help="Run dir to write checkpoint.pt, last.pt, metrics.jsonl."),
    model: str = typer.Option("dacdr", "--model", help="Zoo model name (models.zoo.MODELS)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when present), cpu or cuda."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Maximum epochs (early stopping on validation)."),
    batch_size: int = typer.Option(
        1024, "--batch-size", min=1, help="Rows per step (per process under torchrun)."
    ),
    lr: float = typer.Option(2e-3, "--lr", help="Learning rate (SparseAdam and AdamW)."),
    patience: int = typer.Option(
        1, "--patience", min=1, help="Epochs without validation gain before stopping."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of init, shuffling and everything else."),
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
    from models.run import train
    from models.train import echo_progress, epoch_lines, summarize_run
    from models.zoo import get_entry

    _dataset(data)
    output_dir(out, "--out")
    with user_errors(ValueError, option="--model"):
        get_entry(model)
    check_engine(engine)
    if engine == RAY:
        check_workers(workers)
        if device not in ("auto", "cpu", "cuda"):  # the workers' GPUs, not this machine's, decide
            raise UserError(f"--device {device!r}: with --engine ray, expected auto, cpu or cuda")
    else:
        _device(device)
    if lr <= 0:
        raise UserError(f"--lr {lr}: must be > 0")
    if engine == RAY:
        from models.ray_train import TrainArgs, train_on_ray

        args = TrainArgs(str(data), str(out), model=model, device=device, seed=seed, epochs=epochs,
                         batch_size=batch_size, lr=lr, patience=patience, resume=resume, embed_dim=embed_dim,
                         attn_dim=attn_dim, dropout=dropout, max_batches_per_epoch=max_batches)
        typer.echo(f"training on {workers} Ray Train worker(s)")
        run = train_on_ray(args, workers)
        for line in epoch_lines(run, model, epochs):  # the workers' own lines stay in their Ray logs
            typer.echo(line)
        typer.echo(summarize_run(run, epochs, patience).render())
        return
    if _is_rank0():
        echo_progress()
    run = train(data, out, model=model, device=device, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                patience=patience, resume=resume, embed_dim=embed_dim, attn_dim=attn_dim, dropout=dropout,
                max_batches_per_epoch=max_batches, progress=progress)
    if _is_rank0():
        typer.echo(summarize_run(run, epochs, patience).render())


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


@app.command("finetune")
def finetune_cmd(
    base: Path = typer.Option(..., "--base", help="Trained DACDR run dir (its checkpoint.pt)."),
    domain: str = typer.Option(..., "--domain", help="The new target domain to fine-tune on."),
    data: Path = typer.Option(..., "--data", help="Dataset dir of the new domain."),
    out: Path = typer.Option(..., "--out", help="Run dir of the fine-tuned model."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Maximum epochs (early stopping on validation)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Rows per step."),
    patience: int = typer.Option(
        2, "--patience", min=1, help="Epochs without validation gain before stopping."
    ),
    lr: float = typer.Option(2e-3, "--lr", help="Learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show the tqdm bar within each epoch (epoch lines always)."
    ),
) -> None:
    """Fine-tune e_d, target item embeddings and attention W^Q/W^K/W^V on a new domain (rest frozen)."""
    from models.checkpoint import CheckpointError
    from models.finetune import finetune
    from models.spec import manifest_domains, read_manifest
    from models.train import echo_progress, summarize_run

    _run(base, "--base")
    domain_name(domain)
    _dataset(data)
    with user_errors(ValueError, option="--data"):
        known = manifest_domains(read_manifest(data))
    if domain not in known:
        raise UserError(f"--domain {domain!r}: not in {data}/manifest.json (has {', '.join(sorted(known))})")
    output_dir(out, "--out")
    _device(device)
    if lr <= 0:
        raise UserError(f"--lr {lr}: must be > 0")
    echo_progress()
    with user_errors(CheckpointError, option="--base"):
        run = finetune(base, domain, data, out, epochs=epochs, seed=seed, device=device,
                       batch_size=batch_size, lr=lr, patience=patience, progress=progress)
    typer.echo(summarize_run(run, epochs, patience).render())


if __name__ == "__main__":  # `torchrun --nproc_per_node=N -m models.cli train ...`
    from dacdr.threads import configure

    configure()  # each of torchrun's N processes: $DACDR_THREADS, else its share of half the cores
    app()
