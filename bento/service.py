"""The DACDR ranking service: one BentoML service class, configured per domain.

`bentoml serve bento.service:DacdrService` (or the Bento `dacdr-<domain>`) serves it; the rooms
it is built from:

    bento.config   environment settings, Bento arguments, preflight, workers_env
    bento.schema   the request/response schema
    bento.ranker   the scoring core, no HTTP (Ranker, Query, read_user_features)
    bento.router   queries -> A/B arm -> ranker -> response, exploration, served-log rows
    bento.arms     the experiment config and sticky assignment (pure)
    bento.served_log  the served-ranking log (bounded queue, parquet writer thread)
    bento.store_watch the store a worker reads: reopen on replacement, Redis bounds, readiness
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

import atexit
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

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
from bento.ranker import Query, Ranker
from bento.router import Router
from bento.schema import Candidates, EventTime, Id, RankRequest, RankResponse, RequestId
from bento.served_log import ENV_SERVED_LOG_DIR, ServedLog

install_log_hygiene()
PROBE_EVERY_S = 5.0  # the worker's own readiness check, for the gauges


def failure_marker(server_pid: int) -> Path:
    """Where a worker that cannot start leaves its reason for the server process to exit 1 on."""
    return Path(tempfile.gettempdir()) / f"dacdr-serve-{server_pid}.failed"


def exit_failed_on_marker() -> None:
    """In the `bentoml serve` process, at exit: status 1 when a worker left a failure marker.

    The server stops on the worker's SIGTERM like on an operator's, with status 0; a supervisor
    (systemd, a container runtime) must see that it failed.
    """
    marker = failure_marker(os.getpid())
    if marker.exists():
        marker.unlink(missing_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def stop_server(reason: str) -> NoReturn:
    """Say in one line why this worker cannot start and stop the whole server.

    The server restarts a worker whose __init__ fails, forever, with its port open (a corrupt data
    page under an intact schema, a damaged checkpoint, Redis down): SIGTERM to the `bentoml serve`
    process that spawned the worker stops it and every worker, so the command exits (status 1,
    via the marker exit_failed_on_marker reads) instead.
    """
    import psutil

    sys.stderr.write(f"dacdr: cannot serve: {reason}\n")
    sys.stderr.flush()
    parent = psutil.Process(os.getppid())
    if any("bentoml" in part for part in parent.cmdline()):  # never signal an unrelated parent
        failure_marker(parent.pid).write_text(reason)
        parent.send_signal(signal.SIGTERM)
    os._exit(1)


def probe_forever(service: DacdrService, every_s: float = PROBE_EVERY_S) -> None:
    """Run the readiness check every `every_s` seconds, so the gauges on /metrics stay current
    when nothing calls /readyz (a daemon thread per worker)."""
    while True:
        time.sleep(every_s)
        try:
            service.__is_ready__()
        except Exception as exc:  # noqa: BLE001  # a probe must never kill the worker
            logger.warning("readiness probe failed: %s: %s", type(exc).__name__, exc)


def store_gauges() -> dict[str, Any]:
    """The worker's online-store gauges on /metrics (worst live worker wins).

    prometheus_client directly (bentoml.metrics is deprecated): BentoML points every worker at
    its multiprocess directory and /metrics collects from there.
    """
    from prometheus_client import Gauge

    return {
        "ready": Gauge(
            "dacdr_online_store_ready",
            "1 while the online store can serve (what /readyz says), else 0",
            multiprocess_mode="livemin",
        ),
        "users": Gauge(
            "dacdr_online_sampled_users_present",
            "users of a sample the last materialization loaded that the store holds now",
            multiprocess_mode="livemin",
        ),
    }


def open_served_log(environ: dict[str, str]) -> ServedLog | None:
    """The served-ranking log under DACDR_SERVED_LOG_DIR, with its row counters; None when unset."""
    from prometheus_client import Counter

    root = environ.get(ENV_SERVED_LOG_DIR, "").strip()
    if not root:
        return None
    written = Counter("dacdr_served_log_rows_written", "served-log rows written to parquet")
    dropped = Counter("dacdr_served_log_rows_dropped", "served-log rows dropped (queue full or sink failing)")
    return ServedLog(root, on_written=written.inc, on_dropped=dropped.inc)


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
        atexit.register(exit_failed_on_marker)

    def __init__(self) -> None:
        """Load the model from the model store and open the Feast online store, once."""
        self.ready = False
        self.store_reason: str | None = None
        try:
            self.config = resolve_config(vars(bentoml.use_arguments()), dict(os.environ))
            started = time.perf_counter()
            self.ranker = Ranker.load(self.config.domain, self.config.model_tag, self.config.feast_workdir)
            self.load_seconds = time.perf_counter() - started
            self.router = Router(self.ranker, open_served_log(dict(os.environ)))
        except Exception as exc:  # noqa: BLE001  # whatever it is, the worker cannot serve
            stop_server(f"worker start failed: {type(exc).__name__}: {exc}")
        self.gauges = store_gauges()
        # Feast's modules run warnings.simplefilter("once", DeprecationWarning) when imported, which
        # puts their filter in front of ours: put the targeted one back in front now they are loaded
        install_log_hygiene()
        self.ready = True
        threading.Thread(target=probe_forever, args=(self,), name="dacdr-probe", daemon=True).start()

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
        self.gauges["ready"].set(int(reason is None))
        watch = self.ranker.watch
        if watch is not None and watch.present is not None:
            self.gauges["users"].set(watch.present)
        return reason is None

    @bentoml.on_shutdown
    def flush_served_log(self) -> None:
        """Write the served-log rows still queued before the worker exits."""
        if self.router.log is not None:
            self.router.log.close()

    @bentoml.api(route="/rank")
    def rank(
        self,
        user_id: Id,
        item_ids: Candidates,
        event_time: EventTime | None = None,
        request_id: RequestId | None = None,
    ) -> RankResponse:
        """Score every candidate for the user from online features; best first."""
        (response,) = self.router.rank([Query.of(user_id, item_ids, event_time, request_id)])
        return response

    @bentoml.api(
        route="/rank_batch",
        batchable=True,
        max_batch_size=BATCH_MAX_QUERIES,
        max_latency_ms=BATCH_MAX_LATENCY_MS,
    )
    def rank_batch(self, queries: Annotated[list[RankRequest], Field(min_length=1)]) -> list[RankResponse]:
        """Several queries at once; adaptive batching merges concurrent calls into one Feast read."""
        qs = [Query.of(q.user_id, q.item_ids, q.event_time, q.request_id) for q in queries]
        return self.router.rank(qs)


DacdrService.add_asgi_middleware(RequestGuard, max_body_bytes=MAX_BODY_BYTES)
