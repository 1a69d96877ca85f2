"""The rollout registry: one small JSON file per domain, written only under an exclusive file lock.

`$BENTOML_HOME/dacdr_registry/<domain>.json` holds the stack of promoted model tags (newest last:
`production` is the last, `previous` the one before), every decision taken (`history`), and while
an A/B test runs its configuration (`experiment`, read by the service; see `start_experiment`).
Every read-modify-write holds `fcntl.flock` on `.<domain>.json.lock` beside it, so two rollouts at
the same moment are serialised: both decisions land in the history and production is the later
one's. Writes are atomic (temp file + rename), so readers that take no lock never see half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features import contract as C

REGISTRY_DIR = "dacdr_registry"
EXPERIMENT = "experiment"
LIVE, SHADOW = "live", "shadow"
CONTROL = "control"  # the control arm's name


class RolloutError(RuntimeError):
    """A rollout/rollback/experiment change that cannot proceed; the message says why."""


def bentoml_home() -> Path:
    """The active BentoML home (BENTOML_HOME or ~/bentoml)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def registry_path(domain: str) -> Path:
    """The registry file of a domain."""
    C.check_domain_name(domain)
    return bentoml_home() / REGISTRY_DIR / f"{domain}.json"


def now() -> str:
    """UTC timestamp for decisions."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_registry(domain: str) -> dict[str, Any]:
    """The domain's registry ({"stack": [...], "history": [...], optional "experiment"}); empty when none."""
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
    """Replace the registry file atomically (callers hold the lock)."""
    path = registry_path(domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


@contextmanager
def locked_registry(domain: str) -> Iterator[dict[str, Any]]:
    """Hold the domain's registry lock; yield its data; write it back when the block succeeds."""
    path = registry_path(domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        try:
            data = read_registry(domain)
            yield data
            _write_registry(domain, data)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def production_model(domain: str) -> str | None:
    """The domain's production model tag, or None before the first rollout."""
    stack = read_registry(domain)["stack"]
    return stack[-1] if stack else None


def previous_model(domain: str) -> str | None:
    """The model a rollback would restore, or None."""
    stack = read_registry(domain)["stack"]
    return stack[-2] if len(stack) > 1 else None


def experiment_of(domain: str) -> dict[str, Any] | None:
    """The running experiment of a domain, or None."""
    return read_registry(domain).get(EXPERIMENT)


def _check_arms(arms: list[dict[str, Any]]) -> None:
    """Names unique, modes known, live shares in [0, 1] summing to 1."""
    names = [a["name"] for a in arms]
    if len(set(names)) != len(names):
        raise RolloutError(f"arm names repeat: {names}")
    for a in arms:
        if a["mode"] not in (LIVE, SHADOW):
            raise RolloutError(f"arm {a['name']}: mode must be {LIVE!r} or {SHADOW!r}, got {a['mode']!r}")
        if not 0.0 <= a["share"] <= 1.0:
            raise RolloutError(f"arm {a['name']}: share must be in [0, 1], got {a['share']}")
    total = sum(a["share"] for a in arms if a["mode"] == LIVE)
    if abs(total - 1.0) > 1e-9:
        raise RolloutError(f"live arms' shares sum to {total:g}, not 1")


def start_experiment(
    domain: str,
    candidate: str,
    share: float = 0.5,
    mode: str = LIVE,
    exploration: float = 0.0,
    horizon_requests: int = 0,
    experiment_id: str | None = None,
    salt: str | None = None,
    control: str | None = None,
) -> dict[str, Any]:
    """Start an A/B test: arm `control` (production, or the model tag `control`) and arm `candidate`
    (`share` of users, or shadow).

    Tags are taken as given (the CLI resolves them in the model store first). RolloutError when the
    domain has no production model or an experiment already runs.
    """
    live_share = share if mode == LIVE else 0.0
    arms = [
        {"name": CONTROL, "model_tag": control, "share": 1.0 - live_share, "mode": LIVE},
        {"name": "candidate", "model_tag": candidate, "share": share, "mode": mode},
    ]
    return _start(domain, arms, exploration, horizon_requests, experiment_id, salt)


def start_arms(
    domain: str,
    candidates: dict[str, str],
    control: str | None = None,
    exploration: float = 0.0,
    horizon_requests: int = 0,
    experiment_id: str | None = None,
    salt: str | None = None,
) -> dict[str, Any]:
    """Start a test of several live arms with equal shares: arm "control" (production, or the model tag
    `control`) and one arm per entry of `candidates` (arm name -> model tag); each candidate is
    compared with the control. RolloutError as for `start_experiment`."""
    if not candidates:
        raise RolloutError("an experiment needs at least one candidate arm")
    share = 1.0 / (len(candidates) + 1)
    arms = [{"name": CONTROL, "model_tag": control, "share": share, "mode": LIVE}]
    arms += [{"name": n, "model_tag": tag, "share": share, "mode": LIVE} for n, tag in candidates.items()]
    return _start(domain, arms, exploration, horizon_requests, experiment_id, salt)


def _start(domain: str, arms: list[dict[str, Any]], exploration: float, horizon_requests: int,
           experiment_id: str | None, salt: str | None) -> dict[str, Any]:
    """Write an experiment of `arms` (the first is the control; its model_tag None means production)."""
    if not 0.0 <= exploration < 1.0:
        raise RolloutError(f"exploration must be in [0, 1), got {exploration}")
    with locked_registry(domain) as data:
        if data.get(EXPERIMENT):
            running = data[EXPERIMENT]["id"]
            raise RolloutError(f"domain {domain!r} already runs experiment {running!r}; stop it first")
        if not data["stack"] and arms[0]["model_tag"] is None:
            raise RolloutError(f"domain {domain!r} has no production model to compare with (give a control)")
        arms = [{**arms[0], "model_tag": arms[0]["model_tag"] or data["stack"][-1]}, *arms[1:]]
        _check_arms(arms)
        exp = {
            "id": experiment_id or f"{domain}-{uuid.uuid4().hex[:8]}",
            "salt": salt or uuid.uuid4().hex,
            "arms": arms,
            "exploration": float(exploration),
            "control": CONTROL,
            "horizon_requests": int(horizon_requests),
            "started_at": now(),
        }
        data[EXPERIMENT] = exp
        data["history"].append({"action": "start_experiment", "domain": domain, "experiment": exp,
                                "decided_at": exp["started_at"]})
    return exp


def set_exploration(domain: str, exploration: float) -> dict[str, Any]:
    """Exploration share of production's answers without an A/B test (an experiment with one arm)."""
    if not 0.0 <= exploration < 1.0:
        raise RolloutError(f"exploration must be in [0, 1), got {exploration}")
    with locked_registry(domain) as data:
        if not data["stack"]:
            raise RolloutError(f"domain {domain!r} has no production model")
        exp = data.get(EXPERIMENT) or {
            "id": f"{domain}-explore-{uuid.uuid4().hex[:8]}", "salt": uuid.uuid4().hex, "control": "control",
            "arms": [{"name": "control", "model_tag": data["stack"][-1], "share": 1.0, "mode": LIVE}],
            "horizon_requests": 0, "started_at": now(),
        }
        exp["exploration"] = float(exploration)
        data[EXPERIMENT] = exp
    return exp


def stop_experiment(domain: str, reason: str = "stopped by operator") -> dict[str, Any]:
    """End the running experiment (production unchanged); RolloutError when none runs."""
    with locked_registry(domain) as data:
        exp = end_experiment(data, reason)
    return exp


def end_experiment(data: dict[str, Any], reason: str) -> dict[str, Any]:
    """Remove the experiment from registry data (caller holds the lock) and record why."""
    exp = data.pop(EXPERIMENT, None)
    if exp is None:
        raise RolloutError(f"domain {data['domain']!r} runs no experiment")
    data["history"].append({"action": "stop_experiment", "domain": data["domain"], "experiment": exp["id"],
                            "reason": reason, "decided_at": now()})
    return exp
