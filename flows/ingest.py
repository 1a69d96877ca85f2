"""`ingest`: validate one day of a landing zone with Great Expectations into curated + quarantine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from dacdr.engine import LOCAL
from flows.common import Layout, retry_transient
from flows.run_logs import configure_run_logs


def _artifact_key(prefix: str, dt: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    return f"{prefix}-{dt}".lower().replace("_", "-")


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def validate_task(logs: str, dt: str, lake: str, engine: str = LOCAL) -> dict[str, Any]:
    """Run features.validation.validate_day; returns the day's JSON report (counts, failures)."""
    from features.validation import ValidationConfig, validate_day

    validate_day(Path(logs), dt, Path(lake), config=ValidationConfig(engine=engine))
    # The JSON report is the stage's published output; reading it keeps the flow independent of
    # the in-memory summary object's shape.
    return json.loads((Path(lake) / "reports" / f"dt={dt}.json").read_text())


def report_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One artifact row per table: read / accepted / quarantined and the failing expectations."""
    rows = []
    for table, stats in report["tables"].items():
        failing = stats.get("failures") or {}
        rows.append(
            {
                "table": table,
                "read": stats["read"],
                "accepted": stats["accepted"],
                "quarantined": stats["quarantined"],
                "failing expectations": ", ".join(f"{k} ({v})" for k, v in sorted(failing.items())) or "-",
            }
        )
    return rows


@flow(name="ingest")
def ingest(logs: str, dt: str, workdir: str, engine: str = LOCAL, lake: str | None = None) -> dict[str, Any]:
    """Validate the landing zone's `dt` partition: curated + quarantine + Data Docs + artifact.

    A table-level failure (schema, empty/unreadable file, count anomaly) fails this flow run
    and leaves the curated zone untouched; row-level failures go to quarantine with a reason.
    Re-running a day replaces that day's outputs. `engine` ray runs the row rules on Ray Data; the
    task itself runs on the flow's task runner (submitted, so a RayTaskRunner puts it on Ray).
    `lake` replaces the workdir's lake (validation output and the count history it reads).
    """
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    out = lake or str(Layout.of(workdir).lake)
    try:
        report = validate_task.submit(str(Path(logs).resolve()), dt, out, engine).result()
    except Exception as exc:
        create_markdown_artifact(
            f"# Validation of {dt} FAILED\n\n```\n{exc}\n```\n\nNothing was written to the curated zone.",
            key=_artifact_key("validation", dt),
            description=f"GX validation of {dt}: table-level failure",
        )
        raise
    rows = report_table(report)
    create_table_artifact(rows, key=_artifact_key("validation", dt), description=f"GX validation of {dt}")
    docs = report.get("data_docs")
    if docs:
        create_markdown_artifact(
            f"Data Docs for {dt}: [{docs}](file://{docs})",
            key=_artifact_key("data-docs", dt),
            description=f"Great Expectations Data Docs for {dt}",
        )
    return report
