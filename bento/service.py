"""The DACDR ranking service: one BentoML service class, configured per domain.

`bentoml serve bento.service:DacdrService` (or the Bento `dacdr-<domain>`) serves it; the rooms
it is built from:

    bento.config   environment settings, Bento arguments, preflight, workers_env
    bento.schema   the request/response schema
    bento.ranker   the scoring core, no HTTP (Ranker, Query, read_user_features)
    bento.health   the online store's health shared by the core and the guard
    bento.guard    ASGI middleware (body limit, store reason on 503) and log hygiene

The model and the feature store are loaded once, in __init__; /readyz is true only after both,
and only while the online store answers. Before any worker starts, `bentoml serve` checks the
configuration, the model and the online store (`preflight`) and exits with one line when one is
broken.

Errors: a bad request is a 400 naming the field (pydantic's detail), a body over the limit a 413,
an online store that is locked or gone a 503 saying so; client errors are logged in one INFO line
without the request body.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import Field

from bento.config import (
    BATCH_MAX_LATENCY_MS,
    BATCH_MAX_QUERIES,
    MAX_BODY_BYTES,
    SERVICE_NAME,
    logger,
    preflight,
    resolve_config,
)
from bento.guard import RequestGuard, install_log_hygiene
from bento.health import STORE_HEALTH
from bento.ranker import Query, Ranker, to_response
from bento.schema import Candidates, EventTime, Id, RankRequest, RankResponse

install_log_hygiene()


@bentoml.service(
    name=SERVICE_NAME,
    http={"host": "127.0.0.1"},
    workers=1,  # `dacdr serve --workers N` raises it (workers_env): one core per worker
    threads=1,
    traffic={"timeout": 30},
    endpoints={"livez": "/healthz", "readyz": "/readyz"},
)
class DacdrService:
    """Ranks candidate items for a user of one target domain with that domain's DACDR model."""

    @bentoml.on_deployment
    def check_dependencies() -> None:
        """Before any worker starts: exit with one line when config, model or online store is broken.

        A worker that fails in __init__ is restarted by the server forever, with the port open;
        this runs once in the `bentoml serve` process instead, so nothing starts at all.
        """
        from features.store import FeatureStoreError

        try:
            preflight(vars(bentoml.use_arguments()), dict(os.environ))
        except (ValueError, FeatureStoreError, BentoMLException) as exc:
            # SystemExit with a message: printed as one line, no traceback, exit status 1
            raise SystemExit(f"dacdr: cannot serve: {exc}") from None

    def __init__(self) -> None:
        """Load the model from the model store and open the Feast online store, once."""
        self.ready = False
        self.store_reason: str | None = None
        self.config = resolve_config(vars(bentoml.use_arguments()), dict(os.environ))
        started = time.perf_counter()
        self.ranker = Ranker.load(self.config.domain, self.config.model_tag, self.config.feast_workdir)
        self.load_seconds = time.perf_counter() - started
        # Feast's modules run warnings.simplefilter("once", DeprecationWarning) when imported, which
        # puts their filter in front of ours: put the targeted one back in front now they are loaded
        install_log_hygiene()
        self.ready = True

    def __is_ready__(self) -> bool:
        """Ready once the model and the feature store are loaded, and while the online store reads."""
        if not self.ready:
            return False
        reason = self.ranker.probe()
        if reason != self.store_reason:  # log transitions only: probes come every few seconds
            if reason is None:
                logger.info("online store readable again")
            else:
                logger.warning("not ready: %s", reason)
            self.store_reason = reason
        if reason is not None:
            STORE_HEALTH.reason = f"online store unavailable: {reason}"
        return reason is None

    @bentoml.api(route="/rank")
    def rank(self, user_id: Id, item_ids: Candidates, event_time: EventTime | None = None) -> RankResponse:
        """Score every candidate for the user from online features; best first."""
        query = Query.of(user_id, item_ids, event_time)
        (scores,), (cold,) = self.ranker.score([query])
        return to_response(query, self.ranker, scores, cold)

    @bentoml.api(
        route="/rank_batch",
        batchable=True,
        max_batch_size=BATCH_MAX_QUERIES,
        max_latency_ms=BATCH_MAX_LATENCY_MS,
    )
    def rank_batch(self, queries: Annotated[list[RankRequest], Field(min_length=1)]) -> list[RankResponse]:
        """Several queries at once; adaptive batching merges concurrent calls into one Feast read."""
        qs = [Query.of(q.user_id, q.item_ids, q.event_time) for q in queries]
        scores, cold = self.ranker.score(qs)
        return [to_response(q, self.ranker, s, c) for q, s, c in zip(qs, scores, cold, strict=True)]


DacdrService.add_asgi_middleware(RequestGuard, max_body_bytes=MAX_BODY_BYTES)
