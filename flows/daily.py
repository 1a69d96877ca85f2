"""`daily`: ingest -> features -> (on its training schedule) train -> package -> rollout of new models."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow

from dacdr.engine import LOCAL, check_engine
from flows.common import THREAD_RUNNER, Layout, task_runner
from flows.featurize import features
from flows.ingest import ingest
from flows.package import package, rollout
from flows.run_logs import configure_run_logs
from flows.train import DEFAULT_EPOCHS, train
from models.run_dir import BEST


def default_day() -> str:
    """Yesterday (UTC): the last complete partition a daily run validates."""
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def is_training_day(dt: str, train_weekday: int, has_base: bool) -> bool:
    """Retrain on the weekly training weekday (0 = Monday), or whenever no base model exists yet."""
    return not has_base or date.fromisoformat(dt).weekday() == train_weekday


@flow(name="daily")
def daily(
    logs: str,
    workdir: str,
    dt: str | None = None,
    retrain: bool | None = None,
    train_weekday: int = 0,
    gpu_deployment: str | None = None,
    device: str = "auto",
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    engine: str = LOCAL,
    runner: str = THREAD_RUNNER,
) -> dict[str, Any]:
    """One day of production: validate `dt` (default yesterday), refresh features, maybe retrain.

    `retrain` None follows the schedule (`train_weekday`, or no base model yet); True/False force it.
    Packaging and rollout run whenever a training run (this flow's or the weekly `train`
    deployment's) has produced models that were not released yet.
    `engine` (local|ray) is where validation and the snapshots compute (dacdr.engine); `runner`
    (thread|ray) is where the validation and featurization tasks run (flows.common.task_runner).
    """
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    check_engine(engine, option="engine")
    layout = Layout.of(workdir)
    day = dt or default_day()
    report = ingest.with_options(task_runner=task_runner(runner))(logs, day, workdir, engine)
    end = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    features.with_options(task_runner=task_runner(runner))(workdir, end=end, engine=engine)
    do_train = retrain if retrain is not None else is_training_day(
        day, train_weekday, (layout.base_run / BEST).is_file()
    )
    result: dict[str, Any] = {"dt": day, "validation": report, "trained": do_train}
    if do_train:
        result["metrics"] = train(
            workdir, gpu_deployment=gpu_deployment, device=device, seed=seed, epochs=epochs
        )
    # Release whatever training produced since the last release: this run's, or the weekly
    # `train` deployment's (which only trains). Comparing metrics files keeps re-runs idempotent.
    metrics_text = layout.metrics.read_text() if layout.metrics.is_file() else None
    released = layout.runs / "released.json"
    if metrics_text is not None and (not released.is_file() or released.read_text() != metrics_text):
        metrics = json.loads(metrics_text)
        tags = package(workdir, domains=sorted(metrics))
        result["rollout"] = rollout(workdir, tags=tags)
        released.write_text(metrics_text)
    return result
