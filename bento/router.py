"""Queries -> A/B arm -> ranker -> response, exploration and the served-ranking log (no HTTP).

The domain's registry (bento.rollout.read_registry) may name an experiment (bento.arms). The
router stats the registry file at most once per REGISTRY_CHECK_S and re-reads it only when the
file changed; each arm's model is loaded from the local BentoML model store once, when the
experiment names it, and kept (nothing is loaded per request), so changing shares needs no Bento
rebuild. A registry entry that cannot be served (bad experiment, model missing) is logged once
and the domain's own model answers alone, as without an experiment.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bento import arms as A
from bento.schema import RankedItem, RankResponse
from bento.served_log import ServedLog, ServedRows

if TYPE_CHECKING:
    from bento.ranker import Query, Ranker

logger = logging.getLogger("bentoml.dacdr")
REGISTRY_CHECK_S = 1.0
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Route:
    """Who answers: the arm's name and ranker, the experiment id, the exploration rate."""

    arm: str
    ranker: Ranker
    experiment_id: str | None
    epsilon: float


@dataclass
class Router:
    """Routes each query to its arm's ranker, answers, logs (see the module docstring)."""

    base: Ranker  # the served model: answers when there is no experiment
    log: ServedLog | None = None
    experiment: A.Experiment | None = None
    rankers: dict[str, Ranker] = field(default_factory=dict)  # model tag -> loaded ranker
    checked_at: float = -1e9
    registry_id: tuple[int, int, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        """The base model is an arm's ranker too, when an experiment names its tag."""
        self.rankers.setdefault(self.base.model_tag, self.base)

    def refresh(self) -> A.Experiment | None:
        """The current experiment: the registry is stat'ed at most once a second, read on change."""
        now = time.monotonic()
        if now - self.checked_at < REGISTRY_CHECK_S:
            return self.experiment
        with self.lock:
            self.checked_at = now
            ident = registry_identity(self.base.domain)
            if ident != self.registry_id:
                self.registry_id = ident
                self.experiment = self._load_experiment()
        return self.experiment

    def _load_experiment(self) -> A.Experiment | None:
        """The registry's experiment with every arm's model loaded; None (logged) when unservable."""
        from bento.rollout import read_registry

        try:
            raw = read_registry(self.base.domain).get("experiment")
            if raw is None:
                return None
            exp = A.Experiment.parse(raw)
            for arm in exp.arms:
                if arm.model_tag not in self.rankers:
                    ranker = self.base.with_model(arm.model_tag)
                    self.rankers[arm.model_tag] = self.rankers[ranker.model_tag] = ranker
        except Exception as exc:  # noqa: BLE001  # a bad entry must not take the service down
            logger.warning("experiment not served, the domain's model answers alone: %s", exc)
            return None
        arms = [(a.name, a.model_tag, a.share, a.mode) for a in exp.arms]
        logger.info("experiment %s: arms %s", exp.id, arms)
        return exp

    def routes(self, queries: Sequence[Query]) -> tuple[list[Route], list[Route]]:
        """Each query's live route, and the shadow routes every query is also scored by."""
        exp = self.refresh()
        if exp is None:
            only = Route(A.PRODUCTION, self.base, None, 0.0)
            return [only] * len(queries), []
        live = {a.name: Route(a.name, self.rankers[a.model_tag], exp.id, exp.exploration) for a in exp.live}
        shadow = [Route(a.name, self.rankers[a.model_tag], exp.id, exp.exploration) for a in exp.shadow]
        return [live[A.assign(exp, q.user_id).name] for q in queries], shadow

    def rank(self, queries: Sequence[Query]) -> list[RankResponse]:
        """Answer every query with its arm's ranking; log every answer and every shadow ranking."""
        answers: list[RankResponse | None] = [None] * len(queries)
        routes, shadows = self.routes(queries)
        groups: dict[str, list[int]] = {}
        for i, route in enumerate(routes):
            groups.setdefault(route.arm, []).append(i)
        for idx in groups.values():
            route = routes[idx[0]]
            scores, cold = route.ranker.score([queries[i] for i in idx])
            for i, s, c in zip(idx, scores, cold, strict=True):
                answers[i] = self._answer(queries[i], route, s, c)
        for route in shadows:  # scored and logged, never answered
            scores, _ = route.ranker.score(queries)
            for q, s in zip(queries, scores, strict=True):
                order = np.argsort(-s, kind="stable")
                self._log(q, route, order, s, explore=False)
        return [a for a in answers if a is not None]

    def _answer(self, query: Query, route: Route, scores: np.ndarray, cold: bool) -> RankResponse:
        """The response (score order, or a random one when the request explores), logged."""
        by_score = np.argsort(-scores, kind="stable")  # ties keep request order
        explore = A.explores(query.request_id, route.epsilon)
        order = by_score[A.random_order(query.request_id, len(scores))] if explore else by_score
        items = np.asarray(query.item_ids, dtype=np.int64)[order]
        ranked = [
            RankedItem(item_id=int(i), score=float(s)) for i, s in zip(items, scores[order], strict=True)
        ]
        self._log(query, route, order, scores, explore, by_score)
        return RankResponse(
            request_id=query.request_id,
            user_id=query.user_id,
            domain=route.ranker.domain,
            model=route.ranker.model_tag,
            arm=route.arm,
            experiment_id=route.experiment_id,
            cold_start=cold,
            ranked=ranked,
        )

    def _log(
        self,
        query: Query,
        route: Route,
        order: np.ndarray,
        scores: np.ndarray,
        explore: bool,
        by_score: np.ndarray | None = None,
    ) -> None:
        """Hand the ranking's rows to the served log (when on): never blocks, never raises."""
        if self.log is None:
            return
        props = A.propensities(order, order if by_score is None else by_score, route.epsilon)
        when = query.event_time
        self.log.put(
            ServedRows(
                request_id=query.request_id,
                event_time_us=(when - EPOCH) // dt.timedelta(microseconds=1),
                day=when.date().isoformat(),
                domain=route.ranker.domain,
                user_id=query.user_id,
                model_tag=route.ranker.model_tag,
                arm=route.arm,
                experiment_id=route.experiment_id,
                explore=explore,
                item_ids=np.asarray(query.item_ids, dtype=np.int64)[order],
                scores=np.asarray(scores, dtype=np.float64)[order],
                propensities=props,
            )
        )


def registry_identity(domain: str) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of the domain's registry file; None when there is none."""
    from bento.rollout import registry_path

    try:
        st = os.stat(registry_path(domain))
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
