"""CLI commands of the serving stage (merged into `dacdr` by dacdr/cli.py).

dacdr package RUN_DIR --domain D [--feast-repo W]   model store entry + Bento dacdr-<D>
dacdr serve --domain D --feast-repo W [--port P] [--served-log DIR]
                                                    bentoml serve the domain's Bento on 127.0.0.1
dacdr rollout --domain D --model TAG --dataset DIR  promote unless worse than production by > 2 s.e.
dacdr rollback --domain D                           restore the previous production model
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dacdr.errors import domain_name, existing_dir, folder_with, user_errors

app = typer.Typer()
RUN_HINT = "a trained run dir (made by `dacdr train` or `dacdr finetune`)"


@app.command("package")
def package_cmd(
    run_dir: Path = typer.Argument(..., help="Trained run dir holding checkpoint.pt."),
    domain: str = typer.Option(..., help="Target domain the model serves (model store name dacdr-<domain>)."),
    base_model: str = typer.Option(None, help="Model tag this run was fine-tuned from (label/metadata)."),
    feast_repo: Path = typer.Option(None, help="Default Feast working directory recorded in the Bento."),
    build: bool = typer.Option(True, help="Also build the Bento dacdr-<domain> for the saved model."),
) -> None:
    """Save a run's checkpoint to the BentoML model store and build the domain's Bento."""
    from bento.packaging import build_bento, save_model
    from models.train import BEST

    folder_with(run_dir, "RUN_DIR", BEST, RUN_HINT)
    domain_name(domain)
    if feast_repo is not None:
        existing_dir(feast_repo, "--feast-repo")
    with user_errors(ValueError):  # the run was not trained for --domain
        tag = save_model(run_dir, domain, base_model=base_model)
    out = {"model": tag}
    if build:
        out["bento"] = build_bento(domain, tag, feast_repo=feast_repo)
    typer.echo(json.dumps(out))


@app.command("serve")
def serve_cmd(
    domain: str = typer.Option(..., help="Domain whose Bento dacdr-<domain> to serve."),
    feast_repo: Path = typer.Option(None, help="Feast working directory (default: recorded at build)."),
    port: int = typer.Option(3000, help="HTTP port."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    bento: str = typer.Option(None, help="Bento tag to serve (default: dacdr-<domain>:latest)."),
    workers: int = typer.Option(
        1, min=1, help="Worker processes, one torch thread each: at most the cores the server may use."
    ),
    served_log: Path = typer.Option(
        None,
        help="Log every served ranking here as parquet (served/dt=YYYY-MM-DD/part-*.parquet); "
        "default: $DACDR_SERVED_LOG_DIR, else off.",
    ),
) -> None:
    """Serve a domain's Bento over HTTP with `bentoml serve` (POST /rank, /readyz, /metrics)."""
    import os
    import subprocess
    import sys

    from bento.config import ENV_FEAST_REPO, workers_env
    from bento.names import model_name
    from bento.served_log import ENV_SERVED_LOG_DIR

    domain_name(domain)
    if feast_repo is not None:
        existing_dir(feast_repo, "--feast-repo")
    target = bento or f"{model_name(domain)}:latest"
    with user_errors(ValueError):
        env = workers_env(dict(os.environ), workers)
    if feast_repo is not None:
        env[ENV_FEAST_REPO] = str(feast_repo.resolve())
    if served_log is not None:
        if served_log.exists() and not served_log.is_dir():
            raise typer.BadParameter(f"{served_log} is not a folder", param_hint="--served-log")
        env[ENV_SERVED_LOG_DIR] = str(served_log.resolve())
    cmd = [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]
    raise typer.Exit(subprocess.call(cmd, env=env))


def _model_tag(tag: str, option: str = "--model") -> str:
    """`tag` if BentoML can read it as a model tag (name[:version]), else a UserError naming `option`."""
    from bentoml import Tag
    from bentoml.exceptions import BentoMLException

    with user_errors(ValueError, BentoMLException, option=f"{option} {tag!r}"):
        Tag.from_taglike(tag)
    return tag


@app.command("rollout")
def rollout_cmd(
    domain: str = typer.Option(..., help="Domain of the candidate model."),
    model: str = typer.Option(..., help="Candidate model tag, e.g. dacdr-<domain>:<version>."),
    dataset: Path = typer.Option(None, help="Dataset dir whose holdout split scores both models."),
    split: str = typer.Option("test", help="Holdout split of the dataset."),
    auc: float = typer.Option(
        None,
        help="Candidate's holdout AUC instead of --dataset (compared with the "
        "AUC production recorded at its promotion).",
    ),
    build: bool = typer.Option(True, help="Rebuild the Bento dacdr-<domain> when production changes."),
) -> None:
    """Promote a model unless its holdout says it is worse than production (paired bootstrap)."""
    from bento.packaging import build_bento
    from bento.rollout import RolloutError, holdout_auc, rollout

    domain_name(domain)
    _model_tag(model)
    if (dataset is None) == (auc is None):
        raise typer.BadParameter("give exactly one of --dataset or --auc")
    if dataset is not None:
        folder_with(dataset, "--dataset", f"{split}.parquet", f"a dataset folder with a {split!r} split")
    with user_errors(ValueError, option="--dataset"):  # no rows of --domain in the split
        metric = auc if dataset is None else holdout_auc(dataset, split, domain)
    with user_errors(RolloutError):
        decision = rollout(domain, model, metric)
    out = decision.to_dict()
    if build and decision.promoted:
        out["bento"] = build_bento(domain)
    typer.echo(json.dumps(out))


@app.command("rollback")
def rollback_cmd(
    domain: str = typer.Option(..., help="Domain to roll back."),
    build: bool = typer.Option(True, help="Rebuild the Bento dacdr-<domain> for the restored model."),
) -> None:
    """Make the previous production model of a domain current again."""
    from bento.packaging import build_bento
    from bento.rollout import RolloutError, rollback

    domain_name(domain)
    with user_errors(RolloutError):
        out = rollback(domain).to_dict()
    if build:
        out["bento"] = build_bento(domain)
    typer.echo(json.dumps(out))
