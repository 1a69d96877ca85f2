"""CLI commands of the model stage: train, evaluate, finetune (merged into `dacdr` by dacdr/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer()


@app.command("train")
def train_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset dir (splits + manifest.json)."),
    out: Path = typer.Option(..., "--out", help="Run dir to write checkpoint.pt, last.pt, metrics.jsonl."),
    model: str = typer.Option("dacdr", "--model", help="Zoo model name (models.zoo.MODELS)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when present), cpu or cuda."),
    epochs: int = typer.Option(10, "--epochs", help="Maximum epochs (early stopping on validation)."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Rows per step (per process under torchrun)."),
    lr: float = typer.Option(2e-3, "--lr", help="Learning rate (SparseAdam and AdamW)."),
    patience: int = typer.Option(1, "--patience", help="Epochs without validation gain before stopping."),
    seed: int = typer.Option(0, "--seed", help="Seed of init, shuffling and everything else."),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run from RUN_DIR/last.pt."),
    embed_dim: int | None = typer.Option(None, "--embed-dim", help="Embedding size k (default 32)."),
    attn_dim: int | None = typer.Option(None, "--attn-dim", help="Attention size (default 32)."),
    dropout: float | None = typer.Option(None, "--dropout", help="Dropout of the MLPs (default 0)."),
    max_batches: int | None = typer.Option(None, "--max-batches", help="Cap on steps per epoch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the tqdm progress bar."),
) -> None:
    """Train a model on a dataset dir; works unchanged under torchrun (DDP)."""
    from models.train import train

    run = train(data, out, model=model, device=device, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                patience=patience, resume=resume, embed_dim=embed_dim, attn_dim=attn_dim, dropout=dropout,
                max_batches_per_epoch=max_batches, progress=progress)
    typer.echo(str(run))


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Option(..., "--run", help="Run dir holding checkpoint.pt."),
    data: Path = typer.Option(..., "--data", help="Dataset dir to score."),
    split: str = typer.Option("test", "--split", help="train, validation or test."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Evaluate a run per domain and overall (all / cold / warm users); writes RUN/eval_<split>.json."""
    from models.evaluate import evaluate

    result = evaluate(run, data, split=split, device=device)
    typer.echo(json.dumps(result["overall"], indent=2))


@app.command("finetune")
def finetune_cmd(
    base: Path = typer.Option(..., "--base", help="Trained DACDR run dir (its checkpoint.pt)."),
    domain: str = typer.Option(..., "--domain", help="The new target domain to fine-tune on."),
    data: Path = typer.Option(..., "--data", help="Dataset dir of the new domain."),
    out: Path = typer.Option(..., "--out", help="Run dir of the fine-tuned model."),
    epochs: int = typer.Option(10, "--epochs", help="Maximum epochs (early stopping on validation)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Rows per step."),
    lr: float = typer.Option(2e-3, "--lr", help="Learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the tqdm progress bar."),
) -> None:
    """Fine-tune e_d, target item embeddings and attention W^Q/W^K/W^V on a new domain (rest frozen)."""
    from models.finetune import finetune

    run = finetune(base, domain, data, out, epochs=epochs, seed=seed, device=device, batch_size=batch_size,
                   lr=lr, progress=progress)
    typer.echo(str(run))


if __name__ == "__main__":  # `torchrun --nproc_per_node=N -m models.cli train ...`
    from dacdr.threads import configure

    configure()  # each of torchrun's N processes: $DACDR_THREADS, else its share of half the cores
    app()
