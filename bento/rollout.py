"""Safe rollout of a domain's model: offline gate on the holdout, online gate on the A/B report.

Offline (`rollout`): candidate and production score the same holdout rows; the candidate is promoted
unless it is worse than production by more than NONINFERIORITY_SE standard errors of the AUC
difference (paired bootstrap over holdout users, models/experiments/significance.py). A domain's
first model must beat `popularity` (the training split's smoothed item CTR) on the holdout by more
than FIRST_MODEL_SE s.e. Online (`decide_online`): after an A/B test (bento/ab.py) promote the
candidate when the report says better, roll it back when it says worse. Every decision and its
figures go to the registry's history (bento/registry.py, under its file lock) and, from the flows,
to a Prefect artifact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bento.names import ModelMismatch, domain_checkpoint
from bento.registry import (  # noqa: F401 (re-exported: the service and flows read them from here)
    EXPERIMENT,
    REGISTRY_DIR,
    RolloutError,
    bentoml_home,
    experiment_of,
    locked_registry,
    now,
    previous_model,
    production_model,
    read_registry,
    registry_path,
    start_experiment,
    stop_experiment,
)
from features import contract as C

PROMOTE, KEEP, ROLLBACK = "promote", "keep", "rollback"
NONINFERIORITY_SE = 2.0  # candidate may trail production by at most this many s.e. of the AUC difference
FIRST_MODEL_SE = 2.0  # a first model must beat popularity by more than this many s.e.
BOOTSTRAP_DRAWS = 200
POPULARITY_PRIOR = 20.0  # pseudo-impressions of the item CTR's shrinkage towards the domain's CTR

# Scores one checkpoint on the holdout; rollout calls it for the candidate and for production,
# so both are measured on exactly the same rows.
HoldoutMetric = Callable[[Path], float]


@dataclass(frozen=True)
class RolloutDecision:
    """What a gate decided, with the figures behind it (JSON-ready via to_dict)."""

    domain: str
    action: str  # promote | keep | rollback
    candidate: str  # the model the decision is about
    production: str | None  # production model after the decision
    previous: str | None  # production model before the decision
    candidate_auc: float | None
    production_auc: float | None
    reason: str
    decided_at: str
    gate: str = "offline"  # offline (holdout) | online (A/B report) | manual
    baseline: str | None = None  # what the candidate was compared with: production tag or "popularity"
    auc_diff: float | None = None  # candidate - baseline on the holdout
    auc_diff_se: float | None = None  # paired bootstrap s.e. of that difference
    figures: dict[str, Any] = field(default_factory=dict)  # the A/B report of an online decision

    @property
    def promoted(self) -> bool:
        """True when the candidate is now the production model."""
        return self.action in (PROMOTE, ROLLBACK) and self.production == self.candidate

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for the registry history and Prefect artifacts)."""
        return {**asdict(self), "promoted": self.promoted}

    def to_markdown(self) -> str:
        """A short markdown table of the decision."""
        rows = [(k, v) for k, v in self.to_dict().items() if k != "figures"]
        body = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return f"| field | value |\n|---|---|\n{body}\n"


def checkpoint_of(tag: str, domain: str) -> tuple[str, Path]:
    """(full tag, checkpoint path) of a stored model of `domain`; RolloutError when absent/foreign."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(tag)
    except NotFound as exc:
        raise RolloutError(f"model {tag!r} is not in the BentoML model store") from exc
    try:
        path = domain_checkpoint(model, domain)
    except ModelMismatch as exc:
        raise RolloutError(str(exc)) from exc
    return str(model.tag), path


@dataclass
class Holdout:
    """Fixed holdout rows: labels, users, popularity scores, and a scorer of checkpoints on them.

    Called with a checkpoint it returns that checkpoint's AUC (a HoldoutMetric); `scores` gives the
    per-row scores the paired bootstrap needs.
    """

    labels: np.ndarray
    users: np.ndarray
    popularity: np.ndarray
    scorer: Callable[[Path], np.ndarray]

    def scores(self, checkpoint: Path) -> np.ndarray:
        """Per-row scores of a checkpoint (finite, one per holdout row)."""
        s = np.asarray(self.scorer(checkpoint), dtype=np.float64)
        if s.shape != self.labels.shape or not np.isfinite(s).all():
            raise RolloutError(f"scores of {checkpoint} are not one finite number per holdout row")
        return s

    def __call__(self, checkpoint: Path) -> float:
        """AUC of a checkpoint on the holdout rows."""
        from models.metrics import auc

        return float(auc(self.labels, self.scores(checkpoint)))

    def compare(self, a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float, float]:
        """(AUC a, AUC b, a - b, paired-bootstrap s.e. of a - b over holdout users)."""
        from models.experiments.significance import paired_auc_bootstrap

        return paired_auc_bootstrap(self.labels, self.users, a, b, BOOTSTRAP_DRAWS, seed)


def _metric(holdout_metric: HoldoutMetric, path: Path, tag: str) -> float:
    """Call the metric and insist on a finite number."""
    value = float(holdout_metric(path))
    if not math.isfinite(value):
        raise RolloutError(f"holdout metric of {tag} is {value}, not a finite number")
    return value


def _recorded_auc(data: dict[str, Any], tag: str) -> float:
    """The holdout AUC `tag` had when it was promoted (from the registry history)."""
    for entry in reversed(data["history"]):
        promoted = entry.get("action") == PROMOTE and entry.get("candidate") == tag
        if promoted and entry.get("candidate_auc") is not None:
            return float(entry["candidate_auc"])
    raise RolloutError(f"no recorded holdout AUC for production model {tag}; pass a HoldoutMetric")


def _paired_gate(holdout: Holdout, cand_path: Path, current: str | None, domain: str) -> dict[str, Any]:
    """The offline gate's figures and verdict on one holdout (first model: against popularity)."""
    cand = holdout.scores(cand_path)
    if current is None:
        a, b, diff, se = holdout.compare(cand, holdout.popularity)
        ok = diff > FIRST_MODEL_SE * se
        verdict = (f"first model: holdout AUC {a:.4f} vs popularity {b:.4f}, difference {diff:+.4f} "
                   f"({diff / se if se > 0 else float('inf'):+.1f} s.e.; needs > {FIRST_MODEL_SE:g})")
        return dict(ok=ok, cand_auc=a, base_auc=b, diff=diff, se=se, baseline="popularity", reason=verdict)
    prod_tag, prod_path = checkpoint_of(current, domain)
    a, b, diff, se = holdout.compare(cand, holdout.scores(prod_path))
    ok = diff >= -NONINFERIORITY_SE * se
    verdict = (f"holdout AUC {a:.4f} vs production {b:.4f}, difference {diff:+.4f} (s.e. {se:.4f}; "
               f"{'within' if ok else 'beyond'} the -{NONINFERIORITY_SE:g} s.e. margin)")
    return dict(ok=ok, cand_auc=a, base_auc=b, diff=diff, se=se, baseline=prod_tag, reason=verdict)


def rollout(domain: str, candidate_tag: str, holdout_metric: HoldoutMetric | float) -> RolloutDecision:
    """The offline gate: promote `candidate_tag` unless the holdout says it is worse (see module doc).

    `holdout_metric` is a `Holdout` (see `holdout_auc`: the paired-bootstrap gate, both models on the
    same rows), any other HoldoutMetric, or the candidate's AUC as a number; the last two compare
    plain AUCs (>= production's; a first model is promoted: an operator's override, with no holdout
    to test it on). The previous production model stays on the stack for `rollback`. The registry
    stays locked for the whole decision, so concurrent rollouts are serialised.
    """
    candidate, cand_path = checkpoint_of(candidate_tag, domain)
    with locked_registry(domain) as data:
        stack: list[str] = data["stack"]
        current = stack[-1] if stack else None
        extra: dict[str, Any] = {}
        prod_auc: float | None = None
        if current == candidate:
            action, reason = KEEP, "candidate is already the production model"
            cand_auc = _metric(holdout_metric, cand_path, candidate) if callable(holdout_metric) else None
            prod_auc = cand_auc
        elif isinstance(holdout_metric, Holdout):
            g = _paired_gate(holdout_metric, cand_path, current, domain)
            action, reason, cand_auc = (PROMOTE if g["ok"] else KEEP), g["reason"], g["cand_auc"]
            prod_auc = g["base_auc"] if current is not None else None
            extra = dict(baseline=g["baseline"], auc_diff=g["diff"], auc_diff_se=g["se"],
                         figures={"baseline_auc": g["base_auc"]})
        else:
            metric = holdout_metric if callable(holdout_metric) else (lambda _: float(holdout_metric))
            cand_auc = _metric(metric, cand_path, candidate)
            if current is None:
                action, reason = PROMOTE, "first model of the domain (AUC given, no holdout to test it on)"
            else:
                prod_tag, prod_path = checkpoint_of(current, domain)
                prod_auc = (_metric(holdout_metric, prod_path, prod_tag) if callable(holdout_metric)
                            else _recorded_auc(data, prod_tag))
                better = cand_auc >= prod_auc
                action = PROMOTE if better else KEEP
                reason = f"holdout AUC {cand_auc:.6f} {'>=' if better else '<'} production {prod_auc:.6f}"
        if action == PROMOTE:
            stack.append(candidate)
        decision = RolloutDecision(
            domain=domain, action=action, candidate=candidate, production=stack[-1] if stack else None,
            previous=current, candidate_auc=cand_auc, production_auc=prod_auc, reason=reason,
            decided_at=now(), **extra,
        )
        data["history"].append(decision.to_dict())
    return decision


def rollback(domain: str) -> RolloutDecision:
    """Make the previous production model current again; RolloutError when there is none."""
    with locked_registry(domain) as data:
        decision = _pop(data, "manual", f"rolled back from {data['stack'][-1] if data['stack'] else None}")
    return decision


def _pop(
    data: dict[str, Any], gate: str, reason: str, figures: dict[str, Any] | None = None
) -> RolloutDecision:
    """Pop production off the stack (caller holds the lock) and record it."""
    stack: list[str] = data["stack"]
    domain = data["domain"]
    if len(stack) < 2:
        raise RolloutError(f"domain {domain!r} has no previous model to roll back to (stack: {stack})")
    retired = stack.pop()
    decision = RolloutDecision(
        domain=domain, action=ROLLBACK, candidate=stack[-1], production=stack[-1], previous=retired,
        candidate_auc=None, production_auc=None, reason=reason, decided_at=now(), gate=gate,
        figures=figures or {},
    )
    data["history"].append(decision.to_dict())
    return decision


def decide_online(domain: str, report: Any, arm: str = "candidate") -> RolloutDecision:
    """The online gate: act on the A/B report's decision for `arm` (bento.ab.ABReport).

    promote: the arm's model becomes production; rollback: the arm is stopped, and if its model was
    already production (promoted offline, tested against the previous one) the previous returns;
    keep: the test ends, production unchanged; continue: nothing changes (not recorded).
    """
    from bento.ab import CONTINUE

    verdict, why = report.decisions[arm], report.reasons[arm]
    figures = report.to_dict()
    with locked_registry(domain) as data:
        exp = data.get(EXPERIMENT)
        if exp is None:
            raise RolloutError(f"domain {domain!r} runs no experiment to decide")
        tag = next((a["model_tag"] for a in exp["arms"] if a["name"] == arm), None)
        if tag is None:
            raise RolloutError(f"experiment {exp['id']} has no arm {arm!r}")
        stack: list[str] = data["stack"]
        current = stack[-1] if stack else None
        figures["experiment"] = exp["id"]
        if verdict == CONTINUE:
            return RolloutDecision(domain, CONTINUE, tag, current, current, None, None, why, now(), "online",
                                   exp["control"], figures=figures)
        from bento.registry import end_experiment

        end_experiment(data, f"A/B decision: {verdict}")
        if verdict == ROLLBACK and current == tag:
            return _pop(data, "online", f"A/B: {why}", figures)
        if verdict == PROMOTE and current != tag:
            stack.append(tag)
        decision = RolloutDecision(domain, verdict, tag, stack[-1] if stack else None, current, None, None,
                                   f"A/B: {why}", now(), "online", exp["control"], figures=figures)
        data["history"].append(decision.to_dict())
    return decision


def ab_control(decision: dict[str, Any], candidate: str) -> str | None:
    """The control model of an A/B test of `candidate` after its offline decision (RolloutDecision.to_dict):
    the previous production model when the candidate was promoted, else the production model; None when
    there is none (a domain's first model: the caller compares it with `popularity`)."""
    promoted = decision.get("production") == candidate
    return decision.get("previous") if promoted else decision.get("production")


def popularity_scores(train: Any, test: Any) -> np.ndarray:
    """`popularity` on the holdout: each item's training CTR shrunk towards the domain's CTR."""
    import pyarrow.compute as pc

    prior = float(pc.mean(train.column(C.LABEL)).as_py() or 0.0)
    items, inverse = np.unique(train.column(C.ITEM_ID).to_numpy(), return_inverse=True)
    clicks = np.bincount(inverse, weights=train.column(C.LABEL).to_numpy().astype(np.float64))
    shown = np.bincount(inverse).astype(np.float64)
    ctr = (clicks + POPULARITY_PRIOR * prior) / (shown + POPULARITY_PRIOR)
    test_items = test.column(C.ITEM_ID).to_numpy()
    pos = np.clip(np.searchsorted(items, test_items), 0, max(len(items) - 1, 0))
    known = len(items) > 0 and items[pos] == test_items
    return np.where(known, ctr[pos] if len(items) else prior, prior)


def holdout_auc(dataset_dir: Path | str, split: str = "test", domain: str | None = None) -> Holdout:
    """The holdout of one split of a dataset (optionally one domain's rows): scores checkpoints on it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(dataset_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {split} split in {dataset_dir}")
    table = pq.read_table(path)
    train_path = Path(dataset_dir) / "train.parquet"
    train = None
    if train_path.is_file():
        train = pq.read_table(train_path, columns=[C.DOMAIN, C.ITEM_ID, C.LABEL])
    if domain is not None:
        table = table.filter(pc.equal(table.column(C.DOMAIN), domain))
        if table.num_rows == 0:
            raise ValueError(f"{path}: no rows of domain {domain!r}")
        if train is not None:
            train = train.filter(pc.equal(train.column(C.DOMAIN), domain))
    if train is None:
        train = table.select([C.ITEM_ID, C.LABEL]).slice(0, 0)

    def scorer(checkpoint: Path) -> np.ndarray:
        """Scores of one checkpoint on the fixed holdout rows."""
        from models.checkpoint import load_checkpoint
        from models.predict import predict

        model, spec, _ = load_checkpoint(checkpoint, "cpu")
        return np.asarray(predict(model, spec, table, device="cpu"))

    labels = table.column(C.LABEL).to_numpy()
    return Holdout(labels, table.column(C.USER_ID).to_numpy(), popularity_scores(train, table), scorer)
