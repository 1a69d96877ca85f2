"""Safe rollout of a domain's model: promote only when it is at least as good on the same holdout.

The registry is one small JSON file per domain under the BentoML home
(`$BENTOML_HOME/dacdr_registry/<domain>.json`): the stack of promoted model tags, newest last
(`production` is the last, `previous` the one before) and every decision taken. Writes are atomic.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features import contract as C

REGISTRY_DIR = "dacdr_registry"
MODEL_PREFIX = "dacdr-"
CHECKPOINT_FILE = "checkpoint.pt"
PROMOTE, KEEP, ROLLBACK = "promote", "keep", "rollback"

# Scores one checkpoint on the holdout; rollout calls it for the candidate and for production,
# so both are measured on exactly the same rows.
HoldoutMetric = Callable[[Path], float]


class RolloutError(RuntimeError):
    """A rollout/rollback that cannot proceed; the message says why."""


@dataclass(frozen=True)
class RolloutDecision:
    """What rollout/rollback decided, with the figures behind it (JSON-ready via to_dict)."""

    domain: str
    action: str  # promote | keep | rollback
    candidate: str  # the model the decision is about
    production: str | None  # production model after the decision
    previous: str | None  # production model before the decision
    candidate_auc: float | None
    production_auc: float | None
    reason: str
    decided_at: str

    @property
    def promoted(self) -> bool:
        """True when the candidate is now the production model."""
        return self.action in (PROMOTE, ROLLBACK) and self.production == self.candidate

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for the registry history and Prefect artifacts)."""
        return {**asdict(self), "promoted": self.promoted}

    def to_markdown(self) -> str:
        """A short markdown table of the decision."""
        rows = [(k, v) for k, v in self.to_dict().items()]
        body = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return f"| field | value |\n|---|---|\n{body}\n"


def bentoml_home() -> Path:
    """The active BentoML home (BENTOML_HOME or ~/bentoml)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def registry_path(domain: str) -> Path:
    """The registry file of a domain."""
    C.check_domain_name(domain)
    return bentoml_home() / REGISTRY_DIR / f"{domain}.json"


def read_registry(domain: str) -> dict[str, Any]:
    """The domain's registry ({"stack": [...], "history": [...]}); empty when none yet."""
    path = registry_path(domain)
    if not path.is_file():
        return {"domain": domain, "stack": [], "history": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RolloutError(f"{path}: corrupt rollout registry: {exc}") from exc
    if not isinstance(data.get("stack"), list) or not isinstance(data.get("history"), list):
        raise RolloutError(f"{path}: rollout registry lacks 'stack'/'history' lists")
    return data


def _write_registry(domain: str, data: dict[str, Any]) -> None:
    """Replace the registry file atomically."""
    path = registry_path(domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def production_model(domain: str) -> str | None:
    """The domain's production model tag, or None before the first rollout."""
    stack = read_registry(domain)["stack"]
    return stack[-1] if stack else None


def previous_model(domain: str) -> str | None:
    """The model a rollback would restore, or None."""
    stack = read_registry(domain)["stack"]
    return stack[-2] if len(stack) > 1 else None


def checkpoint_of(tag: str, domain: str) -> tuple[str, Path]:
    """(full tag, checkpoint path) of a stored model of `domain`; RolloutError when absent/foreign."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(tag)
    except NotFound as exc:
        raise RolloutError(f"model {tag!r} is not in the BentoML model store") from exc
    if model.tag.name != f"{MODEL_PREFIX}{domain}":
        raise RolloutError(f"model {model.tag} is not a model of domain {domain!r}")
    path = Path(model.path_of(CHECKPOINT_FILE))
    if not path.is_file():
        raise RolloutError(f"model {model.tag} has no {CHECKPOINT_FILE}")
    return str(model.tag), path


def _metric(holdout_metric: HoldoutMetric, path: Path, tag: str) -> float:
    """Call the metric and insist on a finite number."""
    value = float(holdout_metric(path))
    if not math.isfinite(value):
        raise RolloutError(f"holdout metric of {tag} is {value}, not a finite number")
    return value


def _now() -> str:
    """UTC timestamp for decisions."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _recorded_auc(data: dict[str, Any], tag: str) -> float:
    """The holdout AUC `tag` had when it was promoted (from the registry history)."""
    for entry in reversed(data["history"]):
        if entry.get("action") == PROMOTE and entry.get("candidate") == tag:
            return float(entry["candidate_auc"])
    raise RolloutError(f"no recorded holdout AUC for production model {tag}; pass a HoldoutMetric")


def rollout(domain: str, candidate_tag: str, holdout_metric: HoldoutMetric | float) -> RolloutDecision:
    """Promote `candidate_tag` iff its holdout AUC >= production's (first model: always).

    `holdout_metric` is either a HoldoutMetric (see `holdout_auc`), evaluated on the candidate and on
    the production model so both are scored on the very same holdout rows, or the candidate's AUC
    as a number, compared with the AUC production recorded when it was promoted (only fair when the
    caller used the same holdout). The previous production model stays on the stack for `rollback`.
    """
    candidate, cand_path = checkpoint_of(candidate_tag, domain)
    data = read_registry(domain)
    stack: list[str] = data["stack"]
    current = stack[-1] if stack else None
    if callable(holdout_metric):
        cand_auc = _metric(holdout_metric, cand_path, candidate)
    else:
        cand_auc = _metric(lambda _: float(holdout_metric), cand_path, candidate)
    prod_auc: float | None = None
    if current is None:
        action, reason = PROMOTE, "first model of the domain"
    elif current == candidate:
        action, reason = KEEP, "candidate is already the production model"
        prod_auc = cand_auc
    else:
        prod_tag, prod_path = checkpoint_of(current, domain)
        if callable(holdout_metric):
            prod_auc = _metric(holdout_metric, prod_path, prod_tag)
        else:
            prod_auc = _recorded_auc(data, prod_tag)
        if cand_auc >= prod_auc:
            action, reason = PROMOTE, f"holdout AUC {cand_auc:.6f} >= production {prod_auc:.6f}"
        else:
            action, reason = KEEP, f"holdout AUC {cand_auc:.6f} < production {prod_auc:.6f}"
    if action == PROMOTE:
        stack.append(candidate)
    decision = RolloutDecision(
        domain=domain,
        action=action,
        candidate=candidate,
        production=stack[-1] if stack else None,
        previous=current,
        candidate_auc=cand_auc,
        production_auc=prod_auc,
        reason=reason,
        decided_at=_now(),
    )
    data["history"].append(decision.to_dict())
    _write_registry(domain, data)
    return decision


def rollback(domain: str) -> RolloutDecision:
    """Make the previous production model current again; RolloutError when there is none."""
    data = read_registry(domain)
    stack: list[str] = data["stack"]
    if len(stack) < 2:
        raise RolloutError(f"domain {domain!r} has no previous model to roll back to (stack: {stack})")
    retired = stack.pop()
    decision = RolloutDecision(
        domain=domain,
        action=ROLLBACK,
        candidate=stack[-1],
        production=stack[-1],
        previous=retired,
        candidate_auc=None,
        production_auc=None,
        reason=f"rolled back from {retired}",
        decided_at=_now(),
    )
    data["history"].append(decision.to_dict())
    _write_registry(domain, data)
    return decision


def holdout_auc(dataset_dir: Path | str, split: str = "test", domain: str | None = None) -> HoldoutMetric:
    """A HoldoutMetric: AUC of a checkpoint on one split of a dataset (optionally one domain's rows)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(dataset_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {split} split in {dataset_dir}")
    table = pq.read_table(path)
    if domain is not None:
        table = table.filter(pc.equal(table.column(C.DOMAIN), domain))
        if table.num_rows == 0:
            raise ValueError(f"{path}: no rows of domain {domain!r}")

    def metric(checkpoint: Path) -> float:
        """AUC of one checkpoint on the fixed holdout rows."""
        from models.checkpoint import load_checkpoint
        from models.metrics import auc
        from models.predict import predict

        model, spec, _ = load_checkpoint(checkpoint, "cpu")
        labels = table.column(C.LABEL).to_numpy()
        return float(auc(labels, predict(model, spec, table, device="cpu")))

    return metric
