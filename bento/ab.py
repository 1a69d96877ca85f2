"""The A/B report: per-arm traffic and outcomes, lifts with user-clustered intervals, and the decision.

Input: `features.served.join_clicks` output (served rows with label and purchase_value).

Intervals. Users are the unit of randomisation (sticky assignment by hash), so rows of one user are
not independent. Every metric is a ratio of per-user sums (CTR = sum clicks / sum impressions,
clicks per request, GMV per 1000 requests), and its variance is the delta method over users:
Var(R) = n/(n-1) * sum_u (x_u - R y_u)^2 / (sum_u y_u)^2. Arms hold disjoint users, so the relative
lift's log ratio has variance Var(R_b)/R_b^2 + Var(R_a)/R_a^2; its interval is exp(log ratio +- z se) - 1.

Decision: a fixed-horizon two-sided z-test on the CTR lift at level ALPHA, taken once every arm has
the pre-registered number of requests (`horizon_requests`, recorded when the experiment starts;
`required_requests` sizes it). A fixed horizon is chosen because its error rate is exact and easy
to check (the A/A test), and the simulator can run the horizon quickly. Peeking is allowed only
for harm: at any look before the horizon an arm whose CTR or clicks-per-request lift is below
-GUARDRAIL_Z s.e. (Haybittle-Peto, two-sided p < 0.001) is stopped; so small a boundary spends
almost none of ALPHA (Haybittle 1971, Peto 1976), so the final test keeps its nominal level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa

from features import contract as C
from features.served import ARM, MODEL_TAG, PURCHASE_VALUE

ALPHA = 0.05
GUARDRAIL_Z = 3.29  # two-sided p < 0.001
PROMOTE, ROLLBACK, KEEP, CONTINUE = "promote", "rollback", "keep", "continue"
METRICS = ("ctr", "clicks_per_request", "gmv_per_1000_requests")


@dataclass(frozen=True)
class ArmStats:
    """One arm's totals."""

    arm: str
    model_tag: str
    users: int
    requests: int
    impressions: int
    clicks: int
    gmv: float

    @property
    def ctr(self) -> float:
        """Clicks / impressions."""
        return self.clicks / max(self.impressions, 1)

    @property
    def clicks_per_request(self) -> float:
        """Clicks / requests."""
        return self.clicks / max(self.requests, 1)

    @property
    def gmv_per_1000_requests(self) -> float:
        """Purchase value per 1000 requests."""
        return 1000.0 * self.gmv / max(self.requests, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form with the derived metrics."""
        return {**asdict(self), **{m: getattr(self, m) for m in METRICS}}


@dataclass(frozen=True)
class Lift:
    """Relative lift of an arm over the control in one metric, with its user-clustered interval."""

    metric: str
    arm: str
    control: str
    lift: float  # arm / control - 1
    low: float
    high: float
    z: float  # log ratio / its s.e.
    p_value: float


@dataclass(frozen=True)
class ABReport:
    """Every arm's stats, its lifts over the control, and the decision per arm."""

    control: str
    horizon_requests: int
    alpha: float
    arms: list[ArmStats]
    lifts: list[Lift]
    decisions: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def lift(self, arm: str, metric: str = "ctr") -> Lift:
        """The lift of `arm` in `metric`."""
        return next(x for x in self.lifts if x.arm == arm and x.metric == metric)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "control": self.control, "horizon_requests": self.horizon_requests, "alpha": self.alpha,
            "arms": [a.to_dict() for a in self.arms], "lifts": [asdict(x) for x in self.lifts],
            "decisions": self.decisions, "reasons": self.reasons,
        }

    def to_markdown(self) -> str:
        """Arms table, lifts table and decisions, as Markdown."""
        head = "| arm | model | users | requests | impressions | clicks | CTR | clicks/req | GMV/1000 req |"
        rows = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        rows += [
            f"| {a.arm} | {a.model_tag} | {a.users} | {a.requests} | {a.impressions} | {a.clicks} | "
            f"{a.ctr:.4f} | {a.clicks_per_request:.4f} | {a.gmv_per_1000_requests:.1f} |"
            for a in self.arms
        ]
        level = f"{1 - self.alpha:.0%}"
        rows += ["", f"| arm vs {self.control} | metric | lift | {level} CI | z |", "|---|---|---:|---|---:|"]
        rows += [
            f"| {x.arm} | {x.metric} | {x.lift:+.2%} | [{x.low:+.2%}, {x.high:+.2%}] | {x.z:+.2f} |"
            for x in self.lifts
        ]
        rows += ["", *(f"- {arm}: **{d}** ({self.reasons[arm]})" for arm, d in self.decisions.items())]
        return "\n".join(rows) + "\n"


def ratio_and_variance(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """sum(num)/sum(den) over clusters and its delta-method variance (clusters independent)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    n, total = len(num), den.sum()
    if n < 2 or total <= 0:
        return float("nan"), float("nan")
    r = num.sum() / total
    resid = num - r * den
    return float(r), float(n / (n - 1) * (resid * resid).sum() / (total * total))


def _per_user(joined: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """arm -> per-user sums: impressions, clicks, requests, gmv (one vectorised group-by)."""
    arm = joined.column(ARM).to_numpy(zero_copy_only=False).astype(str)
    users = joined.column(C.USER_ID).to_numpy()
    req = joined.column(C.REQUEST_ID).to_numpy(zero_copy_only=False).astype(str)
    label = joined.column(C.LABEL).to_numpy().astype(np.float64)
    value = joined.column(PURCHASE_VALUE).to_numpy().astype(np.float64)
    arms, arm_idx = np.unique(arm, return_inverse=True)
    key = np.stack([arm_idx, users.astype(np.int64)], axis=1)
    cells, cell = np.unique(key, axis=0, return_inverse=True)
    cell = cell.ravel()
    _, first_of_request = np.unique(req, return_index=True)  # a request belongs to one user and arm
    is_first = np.zeros(len(req), np.float64)
    is_first[first_of_request] = 1.0
    sums = {
        "impressions": np.bincount(cell, minlength=len(cells)).astype(np.float64),
        "clicks": np.bincount(cell, weights=label, minlength=len(cells)),
        "requests": np.bincount(cell, weights=is_first, minlength=len(cells)),
        "gmv": np.bincount(cell, weights=value, minlength=len(cells)),
    }
    return {str(a): {k: v[cells[:, 0] == i] for k, v in sums.items()} for i, a in enumerate(arms)}


_PARTS = {"ctr": ("clicks", "impressions"), "clicks_per_request": ("clicks", "requests"),
          "gmv_per_1000_requests": ("gmv", "requests")}


def lift(metric: str, arm: str, control: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray],
         alpha: float = ALPHA) -> Lift:
    """Relative lift of arm (per-user sums `b`) over control (`a`) in `metric`, user-clustered."""
    num, den = _PARTS[metric]
    ra, va = ratio_and_variance(a[num], a[den])
    rb, vb = ratio_and_variance(b[num], b[den])
    if not (ra > 0 and rb > 0):
        nan = float("nan")
        return Lift(metric, arm, control, nan, nan, nan, nan, nan)
    log_ratio = math.log(rb / ra)
    se = math.sqrt(vb / rb**2 + va / ra**2)
    z_crit = NormalDist().inv_cdf(1 - alpha / 2)
    z = log_ratio / se if se > 0 else float("inf") * np.sign(log_ratio)
    p = 2 * (1 - NormalDist().cdf(abs(z))) if math.isfinite(z) else 0.0
    return Lift(metric, arm, control, math.expm1(log_ratio), math.expm1(log_ratio - z_crit * se),
                math.expm1(log_ratio + z_crit * se), float(z), float(p))


def decide(
    ctr: Lift, per_request: Lift, requests: int, horizon: int, alpha: float = ALPHA
) -> tuple[str, str]:
    """(decision, reason) for one arm: guardrail at any look, the z-test once the horizon is reached."""
    worst = min(ctr.z, per_request.z)
    if worst < -GUARDRAIL_Z:
        return ROLLBACK, f"guardrail: lift {worst:+.2f} s.e. < -{GUARDRAIL_Z} (significantly worse)"
    if requests < horizon:
        return CONTINUE, f"{requests} of {horizon} pre-registered requests"
    z_crit = NormalDist().inv_cdf(1 - alpha / 2)
    shown = f"CTR lift {ctr.lift:+.2%} [{ctr.low:+.2%}, {ctr.high:+.2%}], z {ctr.z:+.2f}"
    if ctr.z > z_crit:
        return PROMOTE, f"{shown} > {z_crit:.2f}"
    if ctr.z < -z_crit:
        return ROLLBACK, f"{shown} < -{z_crit:.2f}"
    return KEEP, f"{shown}: not significant"


def ab_report(joined: pa.Table, control: str, horizon_requests: int = 0, alpha: float = ALPHA) -> ABReport:
    """The report of served-and-clicked rows (`join_clicks`); `control` is the production arm's name."""
    per_user = _per_user(joined)
    if control not in per_user:
        raise ValueError(f"no served rows of the control arm {control!r} (arms: {sorted(per_user)})")
    arm_col = joined.column(ARM).to_numpy(zero_copy_only=False).astype(str)
    tags = joined.column(MODEL_TAG).to_numpy(zero_copy_only=False).astype(str)
    stats, lifts, decisions, reasons = [], [], {}, {}
    for arm, sums in per_user.items():
        tag = tags[np.flatnonzero(arm_col == arm)[-1]]
        totals = [int(sums[k].sum()) for k in ("requests", "impressions", "clicks")]
        stats.append(ArmStats(arm, str(tag), len(sums["impressions"]), *totals, float(sums["gmv"].sum())))
        if arm == control:
            continue
        arm_lifts = {m: lift(m, arm, control, per_user[control], sums, alpha) for m in METRICS}
        lifts.extend(arm_lifts.values())
        requests = int(min(sums["requests"].sum(), per_user[control]["requests"].sum()))
        decisions[arm], reasons[arm] = decide(arm_lifts["ctr"], arm_lifts["clicks_per_request"], requests,
                                              horizon_requests, alpha)
    stats.sort(key=lambda s: (s.arm != control, s.arm))
    return ABReport(control, horizon_requests, alpha, stats, lifts, decisions, reasons)


def required_requests(ctr: float, mde: float, items_per_request: float, alpha: float = ALPHA,
                      power: float = 0.8, design_effect: float = 1.0) -> int:
    """Requests per arm for a two-sided test of a relative CTR lift `mde` (binomial impressions x design
    effect for users' repeated requests): n = (z_a/2 + z_b)^2 * 2 (1-p)/p / mde^2 / items."""
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    impressions = z * z * 2 * (1 - ctr) / ctr / (mde * mde) * design_effect
    return int(math.ceil(impressions / items_per_request))
