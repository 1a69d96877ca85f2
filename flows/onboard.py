"""`onboard_domain`: bring a new target domain live from its own landing zone.

Validate its logs -> add its domain features to Feast -> fine-tune from the current base model
-> evaluate on its holdout day -> package `dacdr-<domain>` -> roll it out. Every precondition
(domain name, feature values, landing zone, base model) is checked before anything is written,
so a bad request fails fast with a clear message and changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task

from dacdr.threads import configure as configure_threads
from features import contract as C
from flows.common import Layout, retry_transient, use_bentoml_home
from flows.featurize import apply_task, materialize_task, register_domains_task
from flows.package import package_task, rollout_task
from flows.run_logs import configure_run_logs
from flows.train import DEFAULT_EPOCHS, evaluate_task
from models.run_dir import BEST


class OnboardingError(ValueError):
    """An onboarding request that cannot proceed; nothing was written."""


@dataclass(frozen=True)
class OnboardingPlan:
    """A checked onboarding request: what will be read and where it will be written."""

    domain: str
    task: str
    features: dict[str, str]
    zone: Path
    days: list[str]


def _zone_domain_row(zone: Path, domain: str) -> dict[str, str] | None:
    """The landing zone's own domains row for `domain`, when the zone has a domains table."""
    from features import io

    if not C.list_partitions(zone, C.DOMAINS):
        return None
    rows = io.read_table(zone, C.DOMAINS).to_pylist()
    mine = [r for r in rows if r[C.DOMAIN] == domain]
    if not mine:
        raise OnboardingError(f"{zone}/{C.DOMAINS}: no row for domain {domain!r}")
    return {k: ("" if v is None else str(v)) for k, v in mine[0].items()}


def check_request(
    domain: str, features: dict[str, str] | None, landing_zone: str, layout: Layout, task: str
) -> OnboardingPlan:
    """Every precondition of onboarding, checked before any write; OnboardingError says what is wrong."""
    from features import io

    try:
        C.check_domain_name(domain)
    except C.ContractError as exc:
        raise OnboardingError(str(exc)) from None
    if task not in C.TASKS:
        raise OnboardingError(f"task must be one of {list(C.TASKS)}, got {task!r}")
    zone = Path(landing_zone).expanduser().resolve()
    if not zone.is_dir():
        raise OnboardingError(f"landing zone {zone} does not exist")
    days = C.list_days(zone, C.IMPRESSIONS)
    if not days:
        raise OnboardingError(f"landing zone {zone} has no {C.IMPRESSIONS} partitions (dt=YYYY-MM-DD)")
    if not C.list_partitions(layout.curated, C.DOMAINS):
        raise OnboardingError(f"{layout.curated}: no curated zone yet; run the ingest flow first")
    base = layout.base_run / BEST
    if not base.is_file():
        raise OnboardingError(f"{base}: no base model yet; run the train flow first")
    main = io.read_table(layout.curated, C.DOMAINS)
    if domain in main.column(C.DOMAIN).to_pylist():
        raise OnboardingError(f"domain {domain!r} already exists in the main zone; pick a new name")
    expected = C.domain_feature_columns(main.column_names)
    zone_row = _zone_domain_row(zone, domain)
    if features is None:
        if zone_row is None:
            raise OnboardingError(f"no feature values given and {zone} has no {C.DOMAINS} table")
        features = {f: zone_row.get(f, "") for f in expected}
    missing = sorted(set(expected) - set(features))
    unknown = sorted(set(features) - set(expected))
    if missing or unknown:
        raise OnboardingError(
            f"feature values must name exactly the domain features {expected}: "
            f"missing {missing}, unknown {unknown}"
        )
    if zone_row is not None:
        differ = sorted(f for f in expected if zone_row.get(f) != str(features[f]))
        if differ:
            raise OnboardingError(f"feature values {differ} differ from {zone}/{C.DOMAINS}; fix one of them")
    return OnboardingPlan(domain, task, {f: str(features[f]) for f in expected}, zone, days)


@task
def stage_zone_task(plan: OnboardingPlan, workdir: str) -> str:
    """A landing zone for validation: the new domain's impressions + the main curated dimensions.

    Items and behaviours of the new domain's users live in the main zone (already validated);
    they are linked, not copied. The domains table is the main one plus the new domain's row,
    built from the checked feature values.
    """
    import pyarrow as pa

    from features import io

    layout = Layout.of(workdir)
    stage = layout.onboard(plan.domain) / "staging"
    with io.atomic_dir(stage) as tmp:
        sources = ((C.IMPRESSIONS, plan.zone), (C.BEHAVIORS, layout.curated), (C.ITEMS, layout.curated))
        for table, root in sources:
            base = Path(root) / table
            days = set(plan.days) if table in C.EVENT_TABLES else None
            for part in C.list_partitions(root, table):
                if days is not None and part.dt not in days:
                    continue
                link = tmp / part.path.relative_to(base.parent)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(part.path.resolve(), link)
        main = io.read_table(layout.curated, C.DOMAINS)
        row = {C.DOMAIN: plan.domain, C.ROLE: C.ROLE_TARGET, C.TASK: plan.task, **plan.features}
        new = pa.Table.from_pylist([row], schema=main.schema)
        io.write_table(pa.concat_tables([main, new]), tmp / C.DOMAINS / "domains.parquet")
    return str(stage)


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def validate_onboarding_task(stage: str, dt: str, lake: str) -> dict[str, Any]:
    """Validate one day of the staged zone into the domain's own lake (curated + quarantine)."""
    import json

    from features.validation import ValidationConfig, validate_day

    # the staged zone links the main curated tables (stage_zone_task made the links itself)
    validate_day(Path(stage), dt, Path(lake), config=ValidationConfig(follow_links=True))
    return json.loads((Path(lake) / "reports" / f"dt={dt}.json").read_text())


@task
def dataset_task(workdir: str, domain: str) -> str:
    """The new domain's training table through Feast (its impressions + its registered domain row)."""
    from features.offline import write_training_dataset

    layout = Layout.of(workdir)
    out = layout.onboard(domain) / "dataset"
    curated = layout.onboard(domain) / "lake" / "curated"
    write_training_dataset(layout.feast, curated, out, base_logs=layout.curated)
    return str(out)


@task
def finetune_new_task(workdir: str, domain: str, data: str, device: str, seed: int, epochs: int) -> str:
    """Fine-tune the current base model on the new domain's data (paper 3.5)."""
    from features.io import atomic_dir
    from models.finetune import finetune

    layout = Layout.of(workdir)
    with atomic_dir(layout.domain_run(domain)) as tmp:
        finetune(
            layout.base_run, domain, Path(data), tmp, epochs=epochs, seed=seed, device=device, progress=False
        )
    return str(layout.domain_run(domain))


@flow(name="onboard_domain")
def onboard_domain(
    domain: str,
    landing_zone: str,
    workdir: str,
    features: dict[str, str] | None = None,
    task: str = C.TASK_CTR,
    device: str = "auto",
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    threads: int | None = None,
) -> dict[str, Any]:
    """Onboard target domain `domain` from `landing_zone` (impressions + optionally its domains row).

    `features` are its domain-feature values (default: the zone's domains row); they must name
    exactly the main zone's domain features. Returns the holdout metrics and the rollout decision.
    `threads`: CPU threads of this process (default: $DACDR_THREADS, else half the cores).
    """
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    configure_threads(threads)

    layout = Layout.of(workdir)
    plan = check_request(domain, features, landing_zone, layout, task)
    use_bentoml_home(layout)
    stage = stage_zone_task(plan, str(layout.root))
    lake = layout.onboard(domain) / "lake"
    reports = [validate_onboarding_task(stage, dt, str(lake)) for dt in plan.days]
    register_domains_task(str(layout.root))
    apply_task(str(layout.feast))
    materialize_task(str(layout.feast), None)
    data = dataset_task(str(layout.root), domain)
    run = finetune_new_task(str(layout.root), domain, data, device, seed, epochs)
    metrics = evaluate_task(run, data, domain)
    tags = package_task(str(layout.root), domain, run, data)
    decision = rollout_task(str(layout.root), domain, tags["model"], data)
    accepted = sum(r["tables"][C.IMPRESSIONS]["accepted"] for r in reports)
    quarantined = sum(r["tables"][C.IMPRESSIONS]["quarantined"] for r in reports)
    return {
        "domain": domain,
        "impressions_accepted": accepted,
        "impressions_quarantined": quarantined,
        "metrics": metrics,
        **tags,
        "rollout": decision,
    }
