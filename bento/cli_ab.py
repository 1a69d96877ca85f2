"""CLI of the online loop (merged into `dacdr` by dacdr/cli.py).

dacdr ab start --domain D --candidate TAG [--share S | --shadow] [--exploration E] [--horizon-requests N]
dacdr ab stop|status --domain D
dacdr ab explore --domain D --epsilon E               production logs propensities (off-policy estimates)
dacdr ab report --domain D --logs DIR [--decide]     per-arm table, lifts, decision (+ the online gate)
dacdr simulate-online --out ZONE --service D=URL ... --days N --seed S [--served-log DIR]
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dacdr.errors import domain_name, existing_dir, user_errors

app = typer.Typer()
ab = typer.Typer(help="Online A/B tests between model versions of a domain.", no_args_is_help=True)
app.add_typer(ab, name="ab")


@ab.command("start")
def start_cmd(
    domain: str = typer.Option(..., help="Domain whose production model is the control arm."),
    candidate: str = typer.Option(..., help="Candidate model tag (dacdr-<domain>:<version>)."),
    share: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of users on the candidate."),
    shadow: bool = typer.Option(False, help="Score and log the candidate, answer with production."),
    exploration: float = typer.Option(
        0.0, min=0.0, max=0.99, help="Share of requests answered in random order (logs propensities)."
    ),
    horizon_requests: int = typer.Option(
        None, min=1, help="Pre-registered requests per arm before the test decides (default: sized for a "
        "10 % CTR lift at 80 % power from the domain's CTR)."),
    ctr: float = typer.Option(0.01, min=1e-6, max=0.99, help="Expected CTR, to size the default horizon."),
    items: int = typer.Option(10, min=1, help="Items shown per request, to size the default horizon."),
) -> None:
    """Start an A/B test (writes the registry's experiment; the service picks it up without a rebuild)."""
    from bento.ab import required_requests
    from bento.registry import LIVE, SHADOW, RolloutError, start_experiment
    from bento.rollout import checkpoint_of

    domain_name(domain)
    horizon = horizon_requests or required_requests(ctr, 0.10, items)
    with user_errors(RolloutError):
        tag, _ = checkpoint_of(candidate, domain)
        exp = start_experiment(domain, tag, share=0.0 if shadow else share, mode=SHADOW if shadow else LIVE,
                               exploration=exploration, horizon_requests=horizon)
    typer.echo(json.dumps(exp, indent=1))


@ab.command("explore")
def explore_cmd(
    domain: str = typer.Option(..., help="Domain whose production answers get exploration."),
    epsilon: float = typer.Option(0.05, min=0.0, max=0.99, help="Share of requests answered in random order"),
) -> None:
    """Log production with exploration (propensities for off-policy estimates), with or without a test."""
    from bento.registry import RolloutError, set_exploration

    domain_name(domain)
    with user_errors(RolloutError):
        exp = set_exploration(domain, epsilon)
    typer.echo(json.dumps(exp, indent=1))


@ab.command("stop")
def stop_cmd(domain: str = typer.Option(..., help="Domain whose experiment to end.")) -> None:
    """End the running experiment; production is unchanged."""
    from bento.registry import RolloutError, stop_experiment

    domain_name(domain)
    with user_errors(RolloutError):
        exp = stop_experiment(domain)
    typer.echo(json.dumps({"stopped": exp["id"]}))


@ab.command("status")
def status_cmd(domain: str = typer.Option(..., help="Domain to show.")) -> None:
    """The running experiment (or null) and the production model."""
    from bento.registry import RolloutError, experiment_of, production_model

    domain_name(domain)
    with user_errors(RolloutError):
        out = {"domain": domain, "production": production_model(domain), "experiment": experiment_of(domain)}
    typer.echo(json.dumps(out, indent=1))


@ab.command("report")
def report_cmd(
    domain: str = typer.Option(..., help="Domain of the experiment."),
    logs: Path = typer.Option(..., help="Folder holding served/ and clicks/ (a zone's _online/)."),
    horizon_requests: int = typer.Option(None, min=0, help="Override the registry's pre-registered horizon."),
    decide: bool = typer.Option(False, help="Apply the decision: promote, roll back or end the test."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of Markdown."),
) -> None:
    """Per-arm requests, impressions, CTR, clicks/request, GMV/1000 requests, lifts with CIs, decision."""
    import pyarrow.compute as pc

    from bento.ab import ab_report
    from bento.registry import SHADOW, RolloutError, experiment_of
    from bento.rollout import decide_online
    from features.served import EXPERIMENT_ID, join_clicks, read_clicks, read_served

    domain_name(domain)
    existing_dir(logs, "--logs")
    with user_errors(RolloutError, ValueError):
        exp = experiment_of(domain)
        if exp is None:
            raise RolloutError(f"domain {domain!r} runs no experiment (see `dacdr ab status`)")
        served = read_served(logs)
        served = served.filter(pc.equal(served.column(EXPERIMENT_ID), exp["id"]))
        shadow = [a["name"] for a in exp["arms"] if a["mode"] == SHADOW]
        joined = join_clicks(served, read_clicks(logs), shadow)
        if joined.num_rows == 0:
            raise ValueError(f"{logs}: no served rows of experiment {exp['id']!r}")
        horizon = exp.get("horizon_requests", 0) if horizon_requests is None else horizon_requests
        report = ab_report(joined, exp.get("control", "control"), horizon)
        out = {"experiment": exp["id"], **report.to_dict()}
        if decide:
            out["decision"] = decide_online(domain, report).to_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=1))
    else:
        typer.echo(f"# A/B {exp['id']} ({domain})\n\n{report.to_markdown()}")
        if decide:
            typer.echo(f"\ngate: {out['decision']['action']} -> production {out['decision']['production']}")


@app.command("simulate-online")
def simulate_online_cmd(
    out: Path = typer.Option(..., help="Simulator landing zone (`dacdr simulate`) the days are appended to."),
    service: list[str] = typer.Option(..., help="DOMAIN=URL of a running service (repeatable)."),
    days: int = typer.Option(1, min=1, help="Simulated days to run."),
    seed: int = typer.Option(0, help="Seed of the traffic and the clicks; same seed, same traffic."),
    requests_per_day: int = typer.Option(300, min=1, help="Requests per domain and day."),
    candidates: int = typer.Option(10, min=2, max=1000, help="Candidates per request."),
    served_log: Path = typer.Option(None, help="The services' --served-log folder (rows of every arm)."),
) -> None:
    """Drive live services with the simulator's users: requests, clicks, served log + impressions per day."""
    from dataclasses import asdict

    from bento.registry import SHADOW, RolloutError, experiment_of
    from features.contract import ContractError, check_domain_name
    from features.simulator.http import HttpService, ServiceError
    from features.simulator.traffic import simulate_online

    existing_dir(out, "--out")
    if served_log is not None:
        existing_dir(served_log, "--served-log")
    services, shadow = {}, {}
    for spec in service:
        domain, sep, url = spec.partition("=")
        if not sep or not url.startswith(("http://", "https://")) or not domain:
            raise typer.BadParameter(f"{spec!r}: expected DOMAIN=http://HOST:PORT", param_hint="--service")
        with user_errors(ContractError, option="--service"):
            check_domain_name(domain)
        services[domain] = HttpService(url, served_log)
        with user_errors(RolloutError):
            exp = experiment_of(domain) or {"arms": []}
        shadow[domain] = [a["name"] for a in exp["arms"] if a["mode"] == SHADOW]
    with user_errors(ValueError, FileNotFoundError, FileExistsError, ServiceError, OSError):
        done = simulate_online(out, services, days, seed, requests_per_day, candidates, shadow)
    typer.echo(json.dumps([asdict(d) for d in done], indent=1))
