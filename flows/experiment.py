"""`ab_experiment`: an online A/B test end to end: start the arms, N days of traffic, ingest, report, decide.

On the simulator the days come from `simulate-online` against the running services; in production
`simulate=False` skips that step and the flow reports on the real served and click logs of the
days given. The logic lives in bento/registry.py (arms), features/simulator/traffic.py (traffic),
flows/ingest.py (validation of each new day), bento/ab.py (report) and bento/rollout.py (gate):
this flow only orders them and records every figure as a Prefect artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.common import Layout, use_bentoml_home
from flows.ingest import ingest


def _key(prefix: str, domain: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes)."""
    return f"{prefix}-{domain}".replace("_", "-")


@task
def start_task(domain: str, candidate: str, share: float, exploration: float, horizon_requests: int,
               shadow: bool, experiment_id: str | None, control: str | None = None) -> dict[str, Any]:
    """Write the experiment to the registry (the service reads it without a rebuild)."""
    from bento.registry import LIVE, SHADOW, start_experiment

    mode = SHADOW if shadow else LIVE
    return start_experiment(domain, candidate, share=0.0 if shadow else share, mode=mode,
                            exploration=exploration, horizon_requests=horizon_requests,
                            experiment_id=experiment_id, control=control)


@task
def traffic_task(logs: str, services: dict[str, str], days: int, seed: int, requests_per_day: int,
                 served_log: str | None, shadow: dict[str, list[str]]) -> list[dict[str, Any]]:
    """`days` simulated days against the live services; the days' logs land in `logs`."""
    from dataclasses import asdict

    from features.simulator.http import HttpService
    from features.simulator.traffic import simulate_online

    clients = {d: HttpService(url, served_log) for d, url in services.items()}
    done = simulate_online(logs, clients, days, seed, requests_per_day, shadow_arms=shadow)
    return [asdict(d) for d in done]


@task
def report_task(domain: str, online_logs: str) -> dict[str, Any]:
    """The A/B report of the running experiment, from the served and click logs."""
    import pyarrow.compute as pc

    from bento.ab import ab_report
    from bento.registry import SHADOW, experiment_of
    from features.served import EXPERIMENT_ID, join_clicks, read_clicks, read_served

    exp = experiment_of(domain)
    served = read_served(online_logs)
    served = served.filter(pc.equal(served.column(EXPERIMENT_ID), exp["id"]))
    shadow = [a["name"] for a in exp["arms"] if a["mode"] == SHADOW]
    report = ab_report(join_clicks(served, read_clicks(online_logs), shadow), exp["control"],
                       exp["horizon_requests"])
    create_markdown_artifact(f"# A/B {exp['id']}\n\n{report.to_markdown()}", key=_key("ab-report", domain),
                             description=f"A/B report of {domain}")
    return {"experiment": exp["id"], "report": report}


@task
def decide_task(domain: str, report: Any) -> dict[str, Any]:
    """The online gate: promote, roll back or end the test, recorded in the registry and as an artifact."""
    from bento.rollout import decide_online

    decision = decide_online(domain, report)
    create_markdown_artifact(f"# A/B decision for {domain}\n\n{decision.to_markdown()}",
                             key=_key("ab-decision", domain), description=f"Online decision of {domain}")
    return decision.to_dict()


@flow(name="ab-experiment")
def ab_experiment(
    workdir: str,
    domain: str,
    candidate: str,
    services: dict[str, str] | None = None,
    days: int = 3,
    seed: int = 0,
    share: float = 0.5,
    exploration: float = 0.0,
    horizon_requests: int = 1000,
    requests_per_day: int = 300,
    served_log: str | None = None,
    shadow: bool = False,
    simulate: bool = True,
    logs: str | None = None,
    online_logs: str | None = None,
    experiment_id: str | None = None,
    control: str | None = None,
) -> dict[str, Any]:
    """Start candidate vs production (or the model `control`) on `domain`, run `days` of traffic, ingest,
    report and decide.

    `services` maps domains to their running service URLs (simulate=True); `logs` is the landing
    zone (default: the workdir's), `online_logs` the folder with served/ and clicks/ (default: the
    zone's _online/, where simulate-online writes; in production the service's --served-log).
    """
    from features import contract as C
    from features.simulator.traffic import ONLINE_DIR

    log = get_run_logger()
    layout = Layout.of(workdir)
    use_bentoml_home(layout)
    zone = Path(logs) if logs else layout.logs
    exp = start_task(domain, candidate, share, exploration, horizon_requests, shadow, experiment_id,
                     control)
    log.info("experiment %s started: %s", exp["id"], exp["arms"])
    before = set(C.list_days(zone))
    traffic: list[dict[str, Any]] = []
    if simulate:
        shadow_arms = {domain: [a["name"] for a in exp["arms"] if a["mode"] == "shadow"]}
        traffic = traffic_task(str(zone), services or {}, days, seed, requests_per_day, served_log,
                               shadow_arms)
        log.info("%d simulated domain-days of traffic", len(traffic))
    # simulated days hold only the experiment's requests (a few hundred, not a production day), so
    # they are validated into the experiment's own lake: their row counts are judged against each
    # other, not against the production days they would fail the count bound of
    lake = str(layout.experiment_lake(exp["id"])) if simulate else None
    new_days = sorted(set(C.list_days(zone)) - before)
    validations = [ingest(str(zone), dt, workdir, lake=lake) for dt in new_days]
    reported = report_task(domain, online_logs or str(zone / ONLINE_DIR))
    report = reported["report"]
    log.info("A/B report %s: %s", reported["experiment"], report.decisions)
    decision = decide_task(domain, report)
    log.info("decision for %s: %s (%s)", domain, decision["action"], decision["reason"])
    return {"experiment": exp["id"], "traffic": traffic, "validated_days": len(validations),
            "report": report.to_dict(), "decision": decision}
