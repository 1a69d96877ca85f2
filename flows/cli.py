"""CLI commands of this stage (merged into `dacdr` by dacdr/cli.py): `pipeline` (the main job)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from dacdr.errors import output_dir, user_errors

app = typer.Typer()

PRESETS = ("tiny", "demo", "bench")


def configure_environment(workdir: Path, verbose: bool) -> None:
    """Embedded defaults, set before prefect/bentoml are imported (both read them once per process).

    Without PREFECT_API_URL, Prefect starts its ephemeral API; its SQLite database goes under
    <workdir>/prefect so `prefect server start` with the same PREFECT_HOME shows the runs later.
    Values the caller already exported win.
    """
    from flows.common import BENTOML_HOME_ENV, Layout

    layout = Layout.of(workdir)
    defaults = {
        "PREFECT_HOME": str(layout.prefect_home),
        BENTOML_HOME_ENV: str(layout.bentoml_home),
        # a 2-core machine under load can take longer than the default 20 s to start the API
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        # the ephemeral server's telemetry write races the first flow run for the SQLite lock
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO" if verbose else "WARNING",
        # a failed task's traceback is logged by every enclosing flow run: the UI keeps them (the
        # api handler), the terminal gets the command's one `error:` line instead
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "0" if verbose else "CRITICAL",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # Prefect creates PREFECT_HOME without parents; a fresh workdir needs it made first
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)


def format_summary(summary: dict[str, Any]) -> str:
    """The main job's closing summary: rows, AUC vs oracle, Bentos, how to serve and watch."""
    root = summary["workdir"]
    lines = ["", "=" * 78, f"dacdr pipeline: preset {summary['preset']}, workdir {root}", "=" * 78]
    lines.append(f"{'rows (events: all days)':<26} {'read':>10} {'accepted':>10} {'quarantined':>12}")
    for table, n in sorted(summary["rows"].items()):
        lines.append(f"  {table:<24} {n['read']:>10} {n['accepted']:>10} {n['quarantined']:>12}")
    lines.append("holdout AUC per target domain (test day)   model   oracle")
    for domain, auc in summary["auc"].items():
        oracle = summary["oracle_auc"].get(domain, float("nan"))
        lines.append(f"  {domain:<40} {auc:6.4f}   {oracle:6.4f}")
    lines.append("Bentos built (rollout decision)")
    decisions = {d.get("domain"): d for d in summary["rollout"]}
    for tag in summary["bentos"]:
        decision = decisions.get(tag["domain"], {})
        lines.append(f"  {tag['bento']:<40} model {tag['model']}  {decision.get('action', '')}")
    if summary.get("smoke"):
        lines.append("smoke request -> response")
        lines.append(f"  {json.dumps(summary['smoke']['request'])}")
        lines.append(f"  {json.dumps(summary['smoke']['response'])[:600]}")
    ab = summary.get("ab")
    if ab:
        lines.append(f"A/B on {ab['domain']}: candidate {ab['candidate']} vs control {ab['control']}")
        for lift in ab["report"]["lifts"]:
            if lift["lift"] != lift["lift"]:  # NaN: no events of this metric in either arm (e.g. no purchase)
                lines.append(f"  {lift['metric']:<22} n/a (no events)")
                continue
            lines.append(f"  {lift['metric']:<22} lift {lift['lift']:+7.1%}  95% CI [{lift['low']:+.1%}, "
                         f"{lift['high']:+.1%}]  p {lift['p_value']:.3f}")
        lines.append(f"  decision: {ab['decision']['action']} ({ab['decision']['reason']})")
    lines.append("stage wall times")
    for stage, secs in summary["stage_seconds"].items():
        lines.append(f"  {stage:<50} {secs:7.1f}s")
    lines.append(f"  {'total':<50} {summary['total_seconds']:7.1f}s")
    first = summary["bentos"][0]["domain"] if summary["bentos"] else "<domain>"
    lines += [
        "serve a domain (then POST /rank on http://127.0.0.1:3000):",
        f"  BENTOML_HOME={os.environ.get('BENTOML_HOME')} DACDR_FEAST_REPO={root}/feast "
        f".venv/bin/bentoml serve dacdr-{first}:latest --host 127.0.0.1 --port 3000",
        "open the Prefect UI on these runs (http://127.0.0.1:4200):",
        f"  PREFECT_HOME={os.environ.get('PREFECT_HOME')} .venv/bin/prefect server start",
    ]
    return "\n".join(lines)


@app.command("pipeline")
def pipeline_cmd(
    preset: str = typer.Option("demo", help="simulator preset: tiny (tests), demo (make run), bench"),
    workdir: Path = typer.Option(Path(".work"), help="working directory for every stage's output"),
    seed: int = typer.Option(0, help="seed of the simulator, splits and training"),
    device: str = typer.Option("auto", help="training device: auto, cpu or cuda"),
    gpu_deployment: str = typer.Option(
        "", help="run training as this Prefect deployment (e.g. train-step/train-gpu) instead of in-process"
    ),
    smoke: bool = typer.Option(True, help="serve one domain and send it a real ranking request at the end"),
    epochs: int = typer.Option(0, help="epochs of base training and each fine-tune (0: the preset's budget)"),
    verbose: bool = typer.Option(False, help="show Prefect's INFO logs"),
) -> None:
    """The main job: simulate, validate, build features, train, package, roll out, onboard, serve once."""
    if preset not in PRESETS:
        raise typer.BadParameter(f"must be one of {list(PRESETS)}, got {preset!r}", param_hint="--preset")
    output_dir(workdir, "--workdir")
    from models.predict import resolve_device

    with user_errors(ValueError, option="--device"):
        resolve_device(device)
    configure_environment(workdir, verbose)
    from flows.pipeline import pipeline
    from models.run_dir import echo_progress

    echo_progress()  # one line per model and epoch inside the training stages (no tqdm bars)

    if not verbose:
        import logging
        import warnings

        # third-party deprecation chatter (ibis, feast, bentoml) would bury the stage progress
        # lines; Prefect routes warnings through the `py.warnings` logger, so quiet both paths.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        logging.getLogger("py.warnings").setLevel(logging.ERROR)

    from features.validation import ValidationFailed

    try:
        summary = pipeline(
            preset=preset,
            workdir=str(workdir),
            seed=seed,
            device=device,
            gpu_deployment=gpu_deployment or None,
            smoke=smoke,
            epochs=epochs or None,
        )
    except ValidationFailed as exc:  # a data gate stopped the job: what failed, not a traceback
        typer.echo(f"error: pipeline stopped, validation FAILED: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(code=1) from None
    Path(summary["workdir"], "pipeline_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    typer.echo(format_summary(summary))
