"""The DACDR ranking service: one BentoML service class, configured per domain.

A Bento `dacdr-<domain>` is built by `bento.packaging.build_bento`, which stores the domain and
the model tag as Bento arguments (`bentoml.use_arguments`); serving from source reads the same
keys from environment variables instead. The feature store location is runtime configuration:

    DACDR_DOMAIN          target domain (the Bento argument `domain` wins when present)
    DACDR_MODEL_TAG       model store tag (overrides the Bento argument `model_tag`; default: the
                          domain's production model in the rollout registry, else dacdr-<domain>:latest)
    DACDR_FEAST_REPO      Feast working directory of the online store (overrides the Bento
                          argument `feast_repo`, the default recorded at build time)
    DACDR_MAX_CANDIDATES  cap on item_ids per query (default 1000; read when the module loads,
                          so it is part of the request schema and of the OpenAPI document)
    DACDR_BATCH_MAX_LATENCY_MS  adaptive-batching latency budget of /rank_batch (default 30000;
                          read when the module loads; short budgets shed load as 503s, see
                          docs/serving.md)
    DACDR_MAX_BODY_BYTES  largest request body accepted (default 1 MiB); larger ones get 413
    DACDR_ONLINE_BUSY_TIMEOUT_MS  how long a read waits for a locked SQLite online store before
                          the request gets 503 (default 200)

The model and the feature store are loaded once, in __init__; /readyz is true only after both,
and only while the online store answers. Before any worker starts, `bentoml serve` checks the
configuration, the model and the online store (`preflight`) and exits with one line when one is
broken. Every request builds the training-table frame for (user, candidates) from the Feast
online store and scores it with `models.predict.predict`, the same path offline evaluation uses.

Errors: a bad request is a 400 naming the field (pydantic's detail), a body over the limit a 413,
an online store that is locked or gone a 503 saying so; client errors are logged in one INFO line
without the request body.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import AfterValidator, BaseModel, Field, StrictInt, ValidationError

from dacdr.threads import configure as configure_threads

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import torch
    from feast import FeatureService, FeatureStore
    from torch import nn

    from models.spec import FeatureSpec

ENV_DOMAIN = "DACDR_DOMAIN"
ENV_MODEL_TAG = "DACDR_MODEL_TAG"
ENV_FEAST_REPO = "DACDR_FEAST_REPO"
ENV_MAX_CANDIDATES = "DACDR_MAX_CANDIDATES"
ENV_BATCH_MAX_LATENCY_MS = "DACDR_BATCH_MAX_LATENCY_MS"
ENV_MAX_BODY_BYTES = "DACDR_MAX_BODY_BYTES"
ENV_ONLINE_BUSY_TIMEOUT_MS = "DACDR_ONLINE_BUSY_TIMEOUT_MS"
DEFAULT_MAX_CANDIDATES = 1000
# 1000 candidates of 19-digit ids are ~20 kB; a 64-query batch of them ~1.3 MB would be refused,
# so the default leaves room for ~50 full queries per body and DACDR_MAX_BODY_BYTES raises it
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_ONLINE_BUSY_TIMEOUT_MS = 200
DEFAULT_BATCH_MAX_LATENCY_MS = 30_000  # = the traffic timeout: never shed a request that could still finish
BATCH_MAX_QUERIES = 64
# Bento argument keys written by bento.packaging.build_bento
ARG_DOMAIN = "domain"
ARG_MODEL_TAG = "model_tag"
ARG_FEAST_REPO = "feast_repo"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_PREFIX = "dacdr-"
# rows per forward pass: a whole 1000-candidate query in one pass, larger batches split
PREDICT_BATCH = 4096


def read_positive_int(environ: dict[str, str] | os._Environ[str], name: str, default: int) -> int:
    """A positive integer setting from the environment; ValueError naming the variable when bad."""
    raw = environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


MAX_CANDIDATES = read_positive_int(os.environ, ENV_MAX_CANDIDATES, DEFAULT_MAX_CANDIDATES)
BATCH_MAX_LATENCY_MS = read_positive_int(os.environ, ENV_BATCH_MAX_LATENCY_MS, DEFAULT_BATCH_MAX_LATENCY_MS)
MAX_BODY_BYTES = read_positive_int(os.environ, ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)
API_PATHS = ("/rank", "/rank_batch")
# under "bentoml" so that the server's log configuration (handlers, INFO level) applies to it
logger = logging.getLogger("bentoml.dacdr")


def to_utc(value: dt.datetime) -> dt.datetime:
    """The same instant in UTC (naive means UTC); ValueError when it has no UTC date in years 1-9999."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise ValueError(f"{value.isoformat()} lies outside years 1-9999 once converted to UTC") from None


# validated while the request is parsed: a bad time is the sender's 400 and never enters a batch
EventTime = Annotated[dt.datetime, AfterValidator(to_utc)]

Id = Annotated[StrictInt, Field(ge=0, le=2**63 - 1, description="a non-negative int64 id")]
Candidates = Annotated[
    list[Id], Field(min_length=1, max_length=MAX_CANDIDATES, description="candidate item ids to rank")
]


class RankRequest(BaseModel):
    """One ranking query: a user and the candidate items to order for them."""

    user_id: Id
    item_ids: Candidates
    event_time: EventTime | None = Field(
        default=None, description="request time (ISO 8601, UTC when naive); default: now"
    )


class RankedItem(BaseModel):
    """One scored candidate."""

    item_id: int
    score: float


class RankResponse(BaseModel):
    """Candidates sorted best first, with the model that scored them."""

    user_id: int
    domain: str
    model: str = Field(description="model store tag, dacdr-<domain>:<version>")
    cold_start: bool = Field(description="the user has no source-domain history in the online store")
    ranked: list[RankedItem]


# ---------------------------------------------------------------------------------------------
# Scoring core (no HTTP): also used in-process by the benchmark floor and the parity test.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A validated ranking query."""

    user_id: int
    item_ids: list[int]
    event_time: dt.datetime

    @classmethod
    def of(cls, user_id: int, item_ids: list[int], event_time: dt.datetime | None = None) -> Query:
        """A query at `event_time` (UTC; naive means UTC; None means now); ValueError naming a bad time."""
        try:
            when = to_utc(event_time or dt.datetime.now(dt.UTC))
        except ValueError as exc:
            raise ValueError(f"event_time: {exc}") from None
        return cls(int(user_id), [int(i) for i in item_ids], when)


class StoreUnavailable(ServiceUnavailable):
    """The online store cannot be read (locked, gone, unreachable): a 503 carrying the reason."""


@dataclass
class StoreHealth:
    """The online store's current problem (None: last read or probe succeeded); one per process."""

    reason: str | None = None


# shared by the service and RequestGuard: BentoML answers every 5xx exception with one generic
# body, so the guard puts the store's reason into the 503 the client sees
STORE_HEALTH = StoreHealth()


def store_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning the online store itself failed (not the request): SQLite, Redis."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        errors += [RedisConnectionError, RedisTimeoutError]
    except ImportError:  # redis is optional: the SQLite store does not need it
        pass
    return tuple(errors)


SERVICE_NAME = "dacdr"
ENV_BENTOML_OVERRIDES = "BENTOML_CONFIG_OVERRIDES"  # BentoML's JSON config override, read by `bentoml serve`


def workers_env(environ: dict[str, str], workers: int) -> dict[str, str]:
    """`environ` plus the BentoML override that runs `workers` worker processes of this service.

    Each worker runs torch on one thread (Ranker.load), so N workers use N cores: N = the cores the
    server may take. Other overrides already in the variable are kept.
    """
    import json

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    raw = environ.get(ENV_BENTOML_OVERRIDES, "").strip()
    try:
        overrides = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_BENTOML_OVERRIDES} is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"{ENV_BENTOML_OVERRIDES} must be a JSON object, got {raw!r}")
    service = overrides.setdefault("services", {}).setdefault(SERVICE_NAME, {})
    service["workers"] = workers
    return {**environ, ENV_BENTOML_OVERRIDES: json.dumps(overrides)}


def resolve_model_tag(domain: str, model_tag: str | None) -> str:
    """The tag to serve: the given one, else the registry's production model, else the latest."""
    if model_tag:
        return model_tag
    from bento.rollout import production_model

    return production_model(domain) or f"{MODEL_PREFIX}{domain}:latest"


def read_user_features(
    store: FeatureStore, service: FeatureService, user_ids: list[int], domain: str
) -> pa.Table:
    """Users' online features in `domain`: one Feast read through the model's feature service.

    The values of features.online.online_features (tests/serving/test_online_read.py checks they
    agree), kept in arrow: the pandas round trip costs ~5x the read itself for one user.
    """
    from features import contract as C
    from features.sequences import normalize_sequences

    response = store.get_online_features(
        features=service,
        entity_rows={C.USER_ID: [int(u) for u in user_ids], C.DOMAIN: [domain] * len(user_ids)},
    )
    return normalize_sequences(response.to_arrow())


@dataclass
class Ranker:
    """Online features -> training-table frame -> predict; loaded once per process."""

    domain: str
    model_tag: str
    model: nn.Module
    spec: FeatureSpec
    meta: dict[str, Any]
    store: FeatureStore
    feature_service: FeatureService
    item_cache: pa.Table  # side info of known items, row i describes item_cache_ids[i]
    item_cache_ids: Any  # pd.Index of the cached item ids
    feast_workdir: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (the domain row it was made from, FeatureSpec.domain_batch of it): vocab lookups cost ~1.5 ms
    domain_cache: tuple[dict, dict] | None = None

    @classmethod
    def load(cls, domain: str, model_tag: str | None, feast_workdir: Path | str) -> Ranker:
        """Load the checkpoint from the BentoML model store and open the Feast store."""
        import pandas as pd
        import pyarrow as pa

        from features import online
        from features import store as fs
        from features.feature_repo.services import DACDR_V1
        from models.checkpoint import load_checkpoint

        tag = resolve_model_tag(domain, model_tag)
        stored = bentoml.models.get(tag)
        if stored.tag.name != f"{MODEL_PREFIX}{domain}":
            raise ValueError(f"model {stored.tag} is not a model of domain {domain!r}")
        model, spec, meta = load_checkpoint(Path(stored.path_of(CHECKPOINT_FILE)), "cpu")
        model.eval()  # once: serving never trains
        if domain not in spec.domain_tasks:
            raise ValueError(f"model {stored.tag} was not trained for domain {domain!r}: {spec.domain_tasks}")
        # one intra-op thread per worker: requests are small (<= a few thousand rows) and the server
        # runs one worker per core; extra threads only contend (measured in benchmarks/serving.py)
        configure_threads(1)
        # Feast's SQLite store would create an empty file for a missing one: check it first
        fs.check_online_store(feast_workdir)
        store = fs.open_store(feast_workdir)
        busy_ms = read_positive_int(os.environ, ENV_ONLINE_BUSY_TIMEOUT_MS, DEFAULT_ONLINE_BUSY_TIMEOUT_MS)
        if hasattr(store.config.online_store, "busy_timeout_ms"):  # before the first read opens it
            store.config.online_store.busy_timeout_ms = busy_ms
        # item side info is a dimension table: read it for every item the model knows, once;
        # items the model has never seen are looked up in the online store per request.
        known = [int(i) for i in spec.items.ids]
        cache = pa.Table.from_pandas(online.item_features(store, known), preserve_index=False)
        cache = cache.replace_schema_metadata(None)
        return cls(
            domain=domain,
            model_tag=str(stored.tag),
            model=model,
            spec=spec,
            meta=meta,
            store=store,
            feature_service=store.get_feature_service(DACDR_V1),
            item_cache=cache,
            item_cache_ids=pd.Index(known),
            feast_workdir=Path(feast_workdir),
        )

    def probe(self) -> str | None:
        """None when the online store can be read now, else why not (a quick read-only check)."""
        from features.store import FeatureStoreError, check_online_store

        if self.feast_workdir is None:
            return None
        busy_ms = read_positive_int(os.environ, ENV_ONLINE_BUSY_TIMEOUT_MS, DEFAULT_ONLINE_BUSY_TIMEOUT_MS)
        try:
            check_online_store(self.feast_workdir, timeout_ms=busy_ms)
        except FeatureStoreError as exc:
            return str(exc)
        return None

    def user_rows(self, user_ids: list[int]) -> pa.Table:
        """The users' online features (see read_user_features)."""
        return read_user_features(self.store, self.feature_service, user_ids, self.domain)

    def item_rows(self, item_ids: np.ndarray) -> pa.Table:
        """Side info of the candidates, in order: cache hits, plus one Feast read for the misses."""
        import numpy as np
        import pyarrow as pa

        from features import contract as C
        from features.online import item_features

        pos = self.item_cache_ids.get_indexer(item_ids)  # a hash lookup; -1 for items not cached
        miss = pos < 0
        source = self.item_cache
        if miss.any():
            # never-seen items: their side info may still be in the store (new catalogue items);
            # ids unknown to the store come back null and score through the OOV index
            extra_ids = np.unique(item_ids[miss])
            extra = pa.Table.from_pandas(item_features(self.store, extra_ids.tolist()), preserve_index=False)
            extra = extra.replace_schema_metadata(None)
            extra = extra.select(source.column_names).cast(source.schema)
            pos = np.where(miss, len(source) + np.searchsorted(extra_ids, item_ids), pos)
            source = pa.concat_tables([source, extra])
        rows = source.take(pa.array(pos))
        return rows.set_column(rows.schema.get_field_index(C.ITEM_ID), C.ITEM_ID, pa.array(item_ids))

    def read(self, queries: Sequence[Query]) -> tuple[pa.Table, np.ndarray, pa.Table, np.ndarray]:
        """One online read for the queries' distinct users and their candidates' side info:
        (user rows, owner = the user row of every candidate row, candidate item rows, per-query cold)."""
        import numpy as np
        import pyarrow.compute as pc

        from features import contract as C

        users, uidx = self.query_users(queries)
        utbl = self.user_rows(users.tolist())
        lens = np.array([len(q.item_ids) for q in queries], dtype=np.int64)
        items = np.concatenate([np.asarray(q.item_ids, dtype=np.int64) for q in queries])
        seq_cols = [C.seq_col(b, C.ITEM_ID) for b in self.spec.behaviors]
        lengths = sum(np.asarray(pc.fill_null(pc.list_value_length(utbl.column(c)), 0)) for c in seq_cols)
        cold = np.asarray(lengths)[uidx] == 0
        return utbl, np.repeat(uidx, lens), self.item_rows(items), cold

    @staticmethod
    def join(utbl: pa.Table, owner: np.ndarray, itbl: pa.Table, times: pa.Array) -> pa.Table:
        """Training-table-shaped rows: user row owner[i] beside item row i at times[i]."""
        import pyarrow as pa

        from features import contract as C

        rows = utbl.take(pa.array(owner))
        drop = [c for c in (C.ITEM_ID, *itbl.column_names, C.EVENT_TIME) if c in rows.column_names]
        frame = rows.drop_columns(drop)
        for name in itbl.column_names:
            frame = frame.append_column(name, itbl.column(name))
        return frame.append_column(C.EVENT_TIME, times)

    def frame(self, queries: Sequence[Query]) -> tuple[pa.Table, np.ndarray]:
        """The training-table-shaped frame of every (query, candidate) row, and per-query cold flags."""
        import numpy as np
        import pyarrow as pa

        from features import contract as C

        utbl, owner, itbl, cold = self.read(queries)
        lens = [len(q.item_ids) for q in queries]
        times = pa.array(np.repeat([q.event_time for q in queries], lens), type=C.TIMESTAMP)
        return self.join(utbl, owner, itbl, times), cold

    def predict(self, queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray]:
        """Scores of every candidate row in request order, and per-query cold flags.

        DACDR: the user half once per distinct user, tensorized straight from the packed view's
        blobs, the candidates batched against it (models.predict.predict_split, equal to forward).
        Other zoo models: the frame of every (user, candidate) row through models.predict.predict.
        """
        from models.dacdr import DACDR
        from models.predict import predict, predict_split

        if not isinstance(self.model, DACDR):
            frame, cold = self.frame(queries)
            with self.lock:  # one forward pass at a time per process; torch runs it on one thread
                return predict(self.model, self.spec, frame, batch_size=PREDICT_BATCH, device="cpu"), cold
        users, uidx, owner, items = self.read_tensors(queries)
        cold = ~(users["seq_item"] != 0).flatten(1).any(dim=1).numpy()  # per distinct user
        with self.lock:
            return predict_split(self.model, users, items, owner), cold[uidx]

    @staticmethod
    def query_users(queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray]:
        """The queries' distinct users (first-seen order) and each query's index among them."""
        import numpy as np

        ids = np.array([q.user_id for q in queries], dtype=np.int64)
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # distinct users in first-seen order
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return uniq[order], rank[inverse]

    def domain_batch(self) -> dict[str, np.ndarray]:
        """The domain's keys (domain, domain_feats, task) for the model, recomputed only when the
        memoised domain row (features.online.domain_values, refreshed every minute) changes."""
        from features.online import domain_values

        values = domain_values(self.store, self.domain)
        cached = self.domain_cache
        if cached is None or cached[0] is not values:
            cached = self.domain_cache = (values, self.spec.domain_batch(self.domain, values))
        return cached[1]

    def read_tensors(
        self, queries: Sequence[Query]
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray, dict[str, torch.Tensor]]:
        """DACDR's inputs with no frame: the user half's tensors from one read of the packed view
        (one row per distinct user), each query's user row, owner (the user row of every
        candidate) and the candidates' tensors."""
        import numpy as np

        from features.online import packed_sequences

        users, uidx = self.query_users(queries)
        blobs = packed_sequences(self.store, users.tolist())
        lens = np.array([len(q.item_ids) for q in queries], dtype=np.int64)
        items = np.concatenate([np.asarray(q.item_ids, dtype=np.int64) for q in queries])
        item_t = self.spec.tensorize_items(self.item_rows(items))
        return self.spec.tensorize_users(blobs, self.domain_batch()), uidx, np.repeat(uidx, lens), item_t

    def score(self, queries: Sequence[Query]) -> tuple[list[np.ndarray], list[bool]]:
        """Scores of every query's candidates (in request order) and whether each user was cold."""
        import numpy as np

        if not queries:
            return [], []
        try:
            scores, cold = self.predict(queries)
        except store_errors() as exc:
            STORE_HEALTH.reason = f"online store unavailable: {type(exc).__name__}: {exc}"
            raise StoreUnavailable(STORE_HEALTH.reason) from exc
        STORE_HEALTH.reason = None
        bounds = np.cumsum([0, *[len(q.item_ids) for q in queries]])
        parts = [scores[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        return parts, [bool(c) for c in cold]

# ---------------------------------------------------------------------------------------------
# Configuration and the BentoML service
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeConfig:
    """Everything a service process needs to know, resolved once at start."""

    domain: str
    model_tag: str | None
    feast_workdir: Path


def resolve_config(args: dict[str, Any], environ: dict[str, str]) -> ServeConfig:
    """Merge Bento arguments and environment variables; ValueError naming what is missing/bad."""
    from features import contract as C

    domain = str(args.get(ARG_DOMAIN) or environ.get(ENV_DOMAIN) or "")
    if not domain:
        raise ValueError(f"no domain: build the Bento with `dacdr package` or set {ENV_DOMAIN}")
    C.check_domain_name(domain)
    workdir = environ.get(ENV_FEAST_REPO) or args.get(ARG_FEAST_REPO)
    if not workdir:
        raise ValueError(f"no feature store: set {ENV_FEAST_REPO} to the Feast working directory")
    tag = environ.get(ENV_MODEL_TAG) or args.get(ARG_MODEL_TAG) or None
    return ServeConfig(domain=domain, model_tag=tag, feast_workdir=Path(str(workdir)))


def to_response(query: Query, ranker: Ranker, scores: np.ndarray, cold: bool) -> RankResponse:
    """Sort one query's scores best first (ties keep request order)."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    items = np.asarray(query.item_ids, dtype=np.int64)[order]
    ranked = [RankedItem(item_id=int(i), score=float(s)) for i, s in zip(items, scores[order], strict=True)]
    return RankResponse(
        user_id=query.user_id, domain=ranker.domain, model=ranker.model_tag, cold_start=cold, ranked=ranked
    )


def preflight(args: dict[str, Any], environ: dict[str, str]) -> ServeConfig:
    """Check what a worker needs before any starts: configuration, the model, the online store.

    Raises ValueError, bentoml's NotFound or FeatureStoreError with a one-line message.
    """
    from features import store as fs

    config = resolve_config(args, environ)
    tag = resolve_model_tag(config.domain, config.model_tag)
    stored = bentoml.models.get(tag)
    if stored.tag.name != f"{MODEL_PREFIX}{config.domain}":
        raise ValueError(f"model {stored.tag} is not a model of domain {config.domain!r}")
    if not Path(stored.path_of(CHECKPOINT_FILE)).is_file():
        raise ValueError(f"model {stored.tag} has no {CHECKPOINT_FILE}; package it again")
    if not fs.repo_dir(config.feast_workdir).is_dir():
        raise fs.FeatureStoreError(f"{config.feast_workdir}: no feature store; set {ENV_FEAST_REPO}")
    fs.check_online_store(config.feast_workdir)
    return config


# ---------------------------------------------------------------------------------------------
# HTTP hardening: body limit, store reason on 503, one-line client-error logs
# ---------------------------------------------------------------------------------------------

_GENERIC_5XX = "An unexpected error has occurred"  # BentoML's body for any 5xx exception


def _json_message(status: int, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ASGI start and body messages of a JSON response."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class RequestGuard:
    """ASGI middleware of the API routes: refuse bodies over the limit (413) before anything parses
    them, and answer a store outage's 503 with its reason instead of BentoML's generic text."""

    def __init__(
        self, app: Any, max_body_bytes: int = MAX_BODY_BYTES, paths: Sequence[str] = API_PATHS
    ) -> None:
        """Wrap `app`; only `paths` are guarded (probes, metrics and docs pass through)."""
        self.app = app
        self.limit = max_body_bytes
        self.paths = frozenset(paths)

    def _too_large(self, size: str, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The 413 answer (logged in one line: the body is never read further)."""
        logger.info("413 on %s: request body of %s bytes over the %d-byte limit", path, size, self.limit)
        msg = f"request body over {self.limit} bytes ({ENV_MAX_BODY_BYTES})"
        detail = [{"type": "too_large", "loc": ["body"], "msg": msg}]
        return _json_message(413, {"error": msg, "detail": detail})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Buffer the body up to the limit, then hand the request on with a replaying receive."""
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            for message in self._too_large(declared.decode(), path):
                await send(message)
            return
        chunks, size = [], 0
        while True:  # chunked bodies declare no length: count what arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                for reply in self._too_large(f"more than {self.limit}", path):
                    await send(reply)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            """The buffered body once, then whatever the client sends next (its disconnect)."""
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, self._store_reason(send))

    @staticmethod
    def _store_reason(send: Any) -> Any:
        """`send` that replaces the body of a generic 503 with the online store's problem."""
        held: dict[str, Any] = {}

        async def guarded(message: dict[str, Any]) -> None:
            """Hold a 503's start until its body shows whether it is BentoML's generic one."""
            if held.get("done"):
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    held.clear()
                return
            if message["type"] == "http.response.start" and message["status"] == 503:
                held["start"] = message
                return
            if "start" in held and message["type"] == "http.response.body":
                start = held.pop("start")
                reason = STORE_HEALTH.reason
                if reason is None or _GENERIC_5XX.encode() not in message.get("body", b""):
                    await send(start)
                    await send(message)
                    return
                for reply in _json_message(503, {"error": reason}):
                    await send(reply)
                held["done"] = message.get("more_body", False)
                return
            await send(message)

        return guarded


class ClientErrorLogFilter(logging.Filter):
    """Turn BentoML's ERROR-with-traceback for a client error into one INFO line without the input.

    BentoML logs every exception of an API call, 400s included, with `logger.error(exc_info=True)`:
    a ~24-line traceback whose pydantic message quotes the raw input. A client error is not a
    server fault; the line keeps the route, the fields and error types, never the values.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records of client errors and store outages in place; keep every record."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            fields = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '<body>'}: {e['type']}"
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            )
            self._one_line(record, logging.INFO, f"400 ({exc.error_count()} invalid field(s): {fields})")
        elif isinstance(exc, StoreUnavailable):
            self._one_line(record, logging.WARNING, f"503 ({exc})")
        elif isinstance(exc, BentoMLException) and int(exc.error_code) < 500:
            self._one_line(record, logging.INFO, f"{int(exc.error_code)} ({exc})")
        return True

    @staticmethod
    def _one_line(record: logging.LogRecord, level: int, what: str) -> None:
        """Set the record's level and message, drop its traceback."""
        path_method = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.msg, record.args = "%s [%s]: %s", (*path_method, what)
        record.exc_info, record.exc_text = None, None


def install_log_hygiene() -> None:
    """Client errors in one line (ClientErrorLogFilter); silence one upstream per-request warning."""
    http_logger = logging.getLogger("bentoml._internal.server.http_app")  # where BentoML logs them
    if not any(isinstance(f, ClientErrorLogFilter) for f in http_logger.filters):
        http_logger.addFilter(ClientErrorLogFilter())
    # BentoML 1.4's api_endpoint reads `input_data.model_fields` on the instance, which pydantic
    # >= 2.11 deprecates, on every request; the fix belongs upstream (type(input_data).model_fields),
    # so only that message from that module is filtered, every other warning still shows
    warnings.filterwarnings(
        "ignore",
        message=r"Accessing the 'model_fields' attribute on the instance is deprecated",
        module=r"_bentoml_impl\.server\.app",
    )


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
