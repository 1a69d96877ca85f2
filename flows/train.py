"""`train` (CPU side) and `train-step` (the GPU step): base DACDR, per-domain fine-tunes, holdout metrics.

The CPU-side `train` flow builds the training table through Feast, then runs the training
step either in-process (the embedded default) or as its own deployment on the `gpu` work pool
via run_deployment, when a GPU deployment is configured (parameter `gpu_deployment` or env
DACDR_GPU_DEPLOYMENT). The step is the same flow function either way and communicates only
through files under the workdir (the dataset in, runs + metrics.json out).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from dacdr.threads import configure as configure_threads
from flows.common import GPU_DEPLOYMENT_ENV, Layout, retry_transient
from flows.run_logs import configure_run_logs

GPU_STEP_FLOW = "train-step"
# models.run.train's / models.finetune.finetune's defaults, spelled here so importing flows stays light
DEFAULT_EPOCHS = 10
DEFAULT_BATCH = 1024
DEFAULT_FINETUNE_BATCH = 256


@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def training_table_task(workdir: str) -> dict[str, Any]:
    """Build train/validation/test through Feast's point-in-time join; returns the manifest."""
    from features.offline import write_training_dataset

    layout = Layout.of(workdir)
    write_training_dataset(layout.feast, layout.curated, layout.dataset)
    return json.loads((layout.dataset / "manifest.json").read_text())


@task
def train_base_task(
    workdir: str, device: str, seed: int, epochs: int, batch_size: int, max_batches: int | None
) -> str:
    """Train the base DACDR over every target domain (replaces the previous base run)."""
    from features.io import atomic_dir
    from models.run import train

    layout = Layout.of(workdir)
    with atomic_dir(layout.base_run) as tmp:
        train(layout.dataset, tmp, model="dacdr", device=device, seed=seed, epochs=epochs,
              batch_size=batch_size, max_batches_per_epoch=max_batches, progress=False)
    return str(layout.base_run)


@task
def finetune_task(
    workdir: str, domain: str, device: str, seed: int, epochs: int, batch_size: int, max_batches: int | None
) -> str:
    """Fine-tune the base model for one target domain (paper 3.5)."""
    from features.io import atomic_dir
    from models.finetune import finetune

    layout = Layout.of(workdir)
    with atomic_dir(layout.domain_run(domain)) as tmp:
        finetune(layout.base_run, domain, layout.dataset, tmp, epochs=epochs, seed=seed, device=device,
                 batch_size=batch_size, progress=False, max_batches_per_epoch=max_batches)
    return str(layout.domain_run(domain))


@task
def evaluate_task(run: str, data: str, domain: str) -> dict[str, Any]:
    """Holdout (test split) metrics of one run, for one domain."""
    from models.evaluate import evaluate

    result = evaluate(Path(run), Path(data))
    return {"domain": domain, "run": run, **result["domains"][domain]["all"]}


@flow(name=GPU_STEP_FLOW)
def train_step(
    workdir: str,
    domains: list[str] | None = None,
    device: str = "auto",
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH,
    finetune_batch_size: int = DEFAULT_FINETUNE_BATCH,
    max_batches: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """The GPU step: train the base model, fine-tune one model per target domain, evaluate each.

    `max_batches` caps the batches per epoch of the base model and of each fine-tune (a CPU time budget).
    `threads`: CPU threads of this worker process (default: $DACDR_THREADS, else half the cores).
    Writes runs/base, runs/<domain> and runs/metrics.json under the workdir.
    """
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    configure_threads(threads)
    layout = Layout.of(workdir)
    manifest = json.loads((layout.dataset / "manifest.json").read_text())
    targets = domains or target_domains(manifest)
    train_base_task(workdir, device, seed, epochs, batch_size, max_batches)
    metrics = {}
    for domain in targets:
        run = finetune_task(workdir, domain, device, seed, epochs, finetune_batch_size, max_batches)
        metrics[domain] = evaluate_task(run, str(layout.dataset), domain)
    layout.metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def target_domains(manifest: dict[str, Any]) -> list[str]:
    """The target domains listed in a dataset manifest, sorted."""
    from features import contract as C

    return sorted(d for d, info in manifest["domains"].items() if info["role"] == C.ROLE_TARGET)


@flow(name="train")
def train(
    workdir: str,
    gpu_deployment: str | None = None,
    device: str = "auto",
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH,
    finetune_batch_size: int = DEFAULT_FINETUNE_BATCH,
    max_batches: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Training table through Feast -> training step (GPU deployment or in-process) -> metrics artifact.

    `gpu_deployment` ("train-step/<name>") or env DACDR_GPU_DEPLOYMENT selects the remote step.
    """
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    configure_threads(threads)
    layout = Layout.of(workdir)
    training_table_task(workdir)
    remote = gpu_deployment or os.environ.get(GPU_DEPLOYMENT_ENV) or None
    params = {
        "workdir": str(layout.root), "device": device, "seed": seed, "epochs": epochs,
        "batch_size": batch_size, "finetune_batch_size": finetune_batch_size, "max_batches": max_batches,
        "threads": threads,
    }
    if remote:
        from prefect.deployments import run_deployment
        from prefect.exceptions import ObjectNotFound

        try:
            run = run_deployment(remote, parameters=params, timeout=None)
        except ObjectNotFound:
            raise RuntimeError(
                f"GPU training deployment {remote!r} not found on the Prefect API: deploy it "
                f"(prefect deploy --all) or unset {GPU_DEPLOYMENT_ENV} / gpu_deployment to train in-process"
            ) from None
        if run.state is None or not run.state.is_completed():
            state = run.state.name if run.state else "unknown"
            raise RuntimeError(f"GPU training deployment {remote!r} ended in state {state}")
    else:
        train_step(**params)
    metrics = json.loads(layout.metrics.read_text())
    rows = [{"domain": d, **{k: v for k, v in m.items() if k not in ("domain",)}} for d, m in metrics.items()]
    create_table_artifact(rows, key="holdout-metrics", description="Holdout metrics per target domain")
    return metrics
