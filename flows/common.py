"""Shared pieces of the flows: the workdir layout, environment set-up and the retry rule.

Flows hold no data logic: they call stage functions with paths from `Layout`, so every flow
(in-process, under the test harness, or as a deployment on a worker) sees the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features import contract as C

# Environment variable naming the deployment of the GPU training step ("flow-name/deployment-name").
# When set (or when the `train` flow gets `gpu_deployment=...`), training runs there via
# run_deployment; otherwise it runs in-process. The same flow code runs in both places.
GPU_DEPLOYMENT_ENV = "DACDR_GPU_DEPLOYMENT"
BENTOML_HOME_ENV = "BENTOML_HOME"
# Where a flow's submitted tasks run (the `runner` parameter of `daily`): Prefect's thread pool in
# the flow's process, or Ray workers through prefect-ray's RayTaskRunner.
THREAD_RUNNER = "thread"
RAY_RUNNER = "ray"
RUNNERS = (THREAD_RUNNER, RAY_RUNNER)


@dataclass(frozen=True)
class Layout:
    """Where every stage reads and writes under one workdir (the single place paths are spelled)."""

    root: Path

    @classmethod
    def of(cls, workdir: str | Path) -> Layout:
        """The layout of `workdir`, as an absolute path (deployment runs may start in another cwd)."""
        return cls(Path(workdir).expanduser().resolve())

    @property
    def logs(self) -> Path:
        """The landing zone (the simulator writes here in the main job)."""
        return self.root / "logs"

    @property
    def lake(self) -> Path:
        """Validation output: curated/, quarantine/, data_docs/, reports/."""
        return self.root / "lake"

    @property
    def curated(self) -> Path:
        """The curated zone: itself a valid landing zone that downstream stages read."""
        return self.lake / "curated"

    @property
    def feast(self) -> Path:
        """The Feast workdir (feature_store.yaml, registry, offline parquet, online SQLite)."""
        return self.root / "feast"

    @property
    def dataset(self) -> Path:
        """The training table split into train/validation/test (built through Feast)."""
        return self.root / "dataset"

    @property
    def runs(self) -> Path:
        """Training runs: base/ and one folder per fine-tuned domain."""
        return self.root / "runs"

    @property
    def base_run(self) -> Path:
        """The base DACDR run trained over all target domains."""
        return self.runs / "base"

    def domain_run(self, domain: str) -> Path:
        """The run fine-tuned for one target domain."""
        return self.runs / C.check_domain_name(domain)

    @property
    def metrics(self) -> Path:
        """Holdout metrics of the last training, per domain (written by the training step)."""
        return self.runs / "metrics.json"

    def onboard(self, domain: str) -> Path:
        """Working folder of one onboarded domain (its curated zone, dataset)."""
        return self.root / "onboard" / C.check_domain_name(domain)

    def experiment_lake(self, experiment_id: str) -> Path:
        """Validation output of one simulated A/B test's days: the experiment's slice of traffic is not a
        whole production day, so it keeps its own count history (features.suites.CountBounds)."""
        return self.root / "experiments" / experiment_id / "lake"

    @property
    def bentoml_home(self) -> Path:
        """The local BentoML store (models and Bentos)."""
        return self.root / "bentoml"

    @property
    def prefect_home(self) -> Path:
        """PREFECT_HOME of the main job: its ephemeral API's database lives here (for the UI later)."""
        return self.root / "prefect"


def use_bentoml_home(layout: Layout) -> Path:
    """Point BentoML at the workdir's store unless the caller already chose one (env BENTOML_HOME).

    BentoML reads BENTOML_HOME once per process, on first use, so this must run before any
    bentoml call; each flow calls it first.
    """
    current = os.environ.get(BENTOML_HOME_ENV)
    if current:
        return Path(current)
    os.environ[BENTOML_HOME_ENV] = str(layout.bentoml_home)
    return layout.bentoml_home


def _failure_exception(state: Any) -> BaseException | None:
    """The exception a Failed state carries, if any."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        res = state.result(raise_on_failure=False)
    except Exception as exc:  # reading a result can itself fail; that exception is the answer
        return exc
    return res if isinstance(res, BaseException) else None


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry I/O hiccups, never bad data (it fails the same way again)."""
    exc = _failure_exception(state)
    if exc is None:
        return True
    # Data errors are deterministic: retrying them only delays the clear message.
    deterministic = (C.ContractError, ValueError, KeyError, TypeError, FileNotFoundError)
    if isinstance(exc, deterministic):
        return False
    return type(exc).__name__ != "ValidationFailed"


def task_runner(kind: str) -> Any:
    """The Prefect task runner named `kind` (RUNNERS); `ray` connects through dacdr.engine first.

    Connecting first means RayTaskRunner finds Ray initialised and reuses it: $RAY_ADDRESS's cluster,
    else dacdr's bounded local instance (RayTaskRunner alone would start one sized to the machine).
    """
    if kind not in RUNNERS:
        raise ValueError(f"runner {kind!r}: expected one of {', '.join(RUNNERS)}")
    if kind == RAY_RUNNER:
        from dacdr.engine import check_engine, init_ray, local_only

        check_engine("ray", option="runner")
        local_only()  # before prefect_ray imports ray: a local instance binds 127.0.0.1 only
        from prefect_ray import RayTaskRunner

        init_ray()
        return RayTaskRunner()
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner()
