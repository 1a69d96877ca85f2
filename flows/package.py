"""`package` (model store + Bento per domain) and `rollout` (promote only when not worse)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common import Layout, retry_transient, use_bentoml_home
from flows.run_logs import configure_run_logs
from models.run_dir import BEST


def _sha256(path: Path) -> str:
    """Content hash of a file (checkpoints are a few MB)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stored_model_of(run: Path, domain: str) -> str | None:
    """The tag of a `dacdr-<domain>` model already holding this run's checkpoint, if any.

    Packaging the same run twice must not add a second, identical model version (idempotency).
    """
    import bentoml
    from bentoml.exceptions import NotFound

    from bento.names import model_name

    digest = _sha256(run / BEST)
    try:
        models = bentoml.models.list(model_name(domain))
    except NotFound:  # no version of this domain's model yet
        return None
    for model in models:
        stored = Path(model.path_of(BEST))
        if stored.is_file() and _sha256(stored) == digest:
            return str(model.tag)
    return None


def bento_of(model_tag: str, domain: str) -> str | None:
    """The tag of a Bento `dacdr-<domain>` already built for `model_tag`, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    from bento.names import model_name

    try:
        bentos = bentoml.bentos.list(model_name(domain))
    except NotFound:  # no Bento of this domain yet
        return None
    for bento in bentos:
        if bento.info.labels.get("model") == model_tag:
            return str(bento.tag)
    return None


@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def package_task(workdir: str, domain: str, run: str, dataset: str) -> dict[str, str]:
    """Save a run's checkpoint as `dacdr-<domain>` and build its Bento (reusing identical ones)."""
    from bento.packaging import build_bento, save_model

    layout = Layout.of(workdir)
    use_bentoml_home(layout)
    model_tag = stored_model_of(Path(run), domain)
    if model_tag is None:
        model_tag = save_model(Path(run), domain, dataset_dir=Path(dataset))
    bento_tag = bento_of(model_tag, domain) or build_bento(domain, model_tag, feast_repo=layout.feast)
    return {"domain": domain, "model": model_tag, "bento": bento_tag}


@task
def rollout_task(workdir: str, domain: str, model_tag: str, dataset: str) -> dict[str, Any]:
    """Promote `model_tag` iff its AUC on the dataset's test day >= production's on the same rows."""
    from bento.rollout import holdout_auc
    from bento.rollout import rollout as rollout_model

    use_bentoml_home(Layout.of(workdir))
    decision = rollout_model(domain, model_tag, holdout_auc(Path(dataset), "test", domain))
    create_markdown_artifact(
        f"# Rollout of {model_tag}\n\n{decision.to_markdown()}",
        key=f"rollout-{domain}".replace("_", "-"),
        description=f"Rollout decision for {domain}",
    )
    return decision.to_dict()


@task
def popularity_model_task(workdir: str, domain: str, dataset: str) -> str:
    """The domain's `popularity` ranker (closed form on the training split) in the model store, as the
    control arm of a first A/B test: a domain with no earlier production model is compared with it."""
    from bento.packaging import save_model
    from models.run import train

    layout = Layout.of(workdir)
    use_bentoml_home(layout)
    run = layout.root / "runs" / f"popularity_{domain}"
    stored = stored_model_of(run, domain) if (run / BEST).is_file() else None
    if stored is not None:
        return stored
    train(Path(dataset), run, model="popularity", device="cpu", progress=False)
    return save_model(run, domain, dataset_dir=Path(dataset))


@flow(name="package")
def package(workdir: str, domains: list[str]) -> list[dict[str, str]]:
    """Save every domain's fine-tuned model to the BentoML store and build its Bento `dacdr-<domain>`."""
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    layout = Layout.of(workdir)
    use_bentoml_home(layout)
    tags = [package_task(workdir, d, str(layout.domain_run(d)), str(layout.dataset)) for d in domains]
    create_table_artifact(tags, key="bentos", description="Models and Bentos built, per domain")
    return tags


@flow(name="rollout")
def rollout(workdir: str, tags: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Roll out each packaged model on the shared holdout (previous production model kept for rollback)."""
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    layout = Layout.of(workdir)
    use_bentoml_home(layout)
    decisions = [rollout_task(workdir, t["domain"], t["model"], str(layout.dataset)) for t in tags]
    keys = ("domain", "action", "candidate", "production", "previous", "reason")
    rows = [{k: d[k] for k in keys} for d in decisions]
    create_table_artifact(rows, key="rollout-decisions", description="Promote / keep per domain")
    return decisions
