"""`package` (model store + Bento per domain) and `rollout` (promote only when not worse)."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.common import Layout, retry_transient, use_bentoml_home


@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def package_task(workdir: str, domain: str) -> dict[str, str]:
    """Save one domain's fine-tuned run as `dacdr-<domain>` and build its Bento."""
    from bento.packaging import build_bento, save_model

    layout = Layout.of(workdir)
    model_tag = save_model(layout.domain_run(domain), domain)
    bento_tag = build_bento(domain, str(model_tag), feast_repo=layout.feast)
    return {"domain": domain, "model": str(model_tag), "bento": str(bento_tag)}


@task
def rollout_task(workdir: str, domain: str, model_tag: str, auc: float) -> dict[str, Any]:
    """Promote `model_tag` if its holdout AUC >= production's (first model always)."""
    from bento.rollout import rollout as rollout_model

    use_bentoml_home(Layout.of(workdir))
    decision = rollout_model(domain, model_tag, auc)
    return asdict(decision) if is_dataclass(decision) else dict(decision)


@flow(name="package")
def package(workdir: str, domains: list[str]) -> list[dict[str, str]]:
    """Save every domain's model to the BentoML model store and build its Bento `dacdr-<domain>`."""
    use_bentoml_home(Layout.of(workdir))
    tags = [package_task(workdir, d) for d in domains]
    create_table_artifact(tags, key="bentos", description="Models and Bentos built, per domain")
    return tags


@flow(name="rollout")
def rollout(workdir: str, tags: list[dict[str, str]], aucs: dict[str, float]) -> list[dict[str, Any]]:
    """Roll out each packaged model on its holdout AUC (the previous production model stays for rollback)."""
    use_bentoml_home(Layout.of(workdir))
    missing = sorted(t["domain"] for t in tags if t["domain"] not in aucs)
    if missing:
        raise ValueError(f"no holdout AUC for {missing}: run the train flow (or pass aucs) first")
    decisions = [rollout_task(workdir, t["domain"], t["model"], float(aucs[t["domain"]])) for t in tags]
    create_table_artifact(decisions, key="rollout-decisions", description="Promote / keep per domain")
    return decisions
