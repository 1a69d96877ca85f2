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

The model and the feature store are loaded once, in __init__; /readyz is true only after both.
Every request builds the training-table frame for (user, candidates) from the Feast online store
and scores it with `models.predict.predict`, the same path offline evaluation uses.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from pydantic import BaseModel, Field, StrictInt

from dacdr.threads import configure as configure_threads

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from feast import FeatureService, FeatureStore
    from torch import nn

    from models.spec import FeatureSpec

ENV_DOMAIN = "DACDR_DOMAIN"
ENV_MODEL_TAG = "DACDR_MODEL_TAG"
ENV_FEAST_REPO = "DACDR_FEAST_REPO"
ENV_MAX_CANDIDATES = "DACDR_MAX_CANDIDATES"
ENV_BATCH_MAX_LATENCY_MS = "DACDR_BATCH_MAX_LATENCY_MS"
DEFAULT_MAX_CANDIDATES = 1000
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

Id = Annotated[StrictInt, Field(ge=0, le=2**63 - 1, description="a non-negative int64 id")]
Candidates = Annotated[
    list[Id], Field(min_length=1, max_length=MAX_CANDIDATES, description="candidate item ids to rank")
]


class RankRequest(BaseModel):
    """One ranking query: a user and the candidate items to order for them."""

    user_id: Id
    item_ids: Candidates
    event_time: dt.datetime | None = Field(
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
        """A query at `event_time` (UTC; naive means UTC; None means now)."""
        when = event_time or dt.datetime.now(dt.UTC)
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
        return cls(int(user_id), [int(i) for i in item_ids], when)


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

    The values of features.store.online_features (tests/serving/test_online_read.py checks they
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
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, domain: str, model_tag: str | None, feast_workdir: Path | str) -> Ranker:
        """Load the checkpoint from the BentoML model store and open the Feast store."""
        import pandas as pd
        import pyarrow as pa

        from features import store as fs
        from features.feature_repo.services import DACDR_V1
        from models.checkpoint import load_checkpoint

        tag = resolve_model_tag(domain, model_tag)
        stored = bentoml.models.get(tag)
        if stored.tag.name != f"{MODEL_PREFIX}{domain}":
            raise ValueError(f"model {stored.tag} is not a model of domain {domain!r}")
        model, spec, meta = load_checkpoint(Path(stored.path_of(CHECKPOINT_FILE)), "cpu")
        if domain not in spec.domain_tasks:
            raise ValueError(f"model {stored.tag} was not trained for domain {domain!r}: {spec.domain_tasks}")
        # one intra-op thread per worker: requests are small (<= a few thousand rows) and the server
        # runs one worker per core; extra threads only contend (measured in benchmarks/serving.py)
        configure_threads(1)
        store = fs.open_store(feast_workdir)
        # item side info is a dimension table: read it for every item the model knows, once;
        # items the model has never seen are looked up in the online store per request.
        known = [int(i) for i in spec.items.ids]
        cache = pa.Table.from_pandas(fs.item_features(store, known), preserve_index=False)
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
        )

    def user_rows(self, user_ids: list[int]) -> pa.Table:
        """The users' online features (see read_user_features)."""
        return read_user_features(self.store, self.feature_service, user_ids, self.domain)

    def item_rows(self, item_ids: np.ndarray) -> pa.Table:
        """Side info of the candidates, in order: cache hits, plus one Feast read for the misses."""
        import numpy as np
        import pyarrow as pa

        from features import contract as C
        from features.store import item_features

        pos = self.item_cache_ids.get_indexer(item_ids)
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

    def frame(self, queries: Sequence[Query]) -> tuple[pa.Table, np.ndarray]:
        """The training-table-shaped frame of every (query, candidate) row, and per-query cold flags."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc

        from features import contract as C

        users = pd.unique(np.array([q.user_id for q in queries], dtype=np.int64))
        utbl = self.user_rows(users.tolist())
        lens = np.array([len(q.item_ids) for q in queries], dtype=np.int64)
        uidx = pd.Index(users).get_indexer([q.user_id for q in queries])
        rows = utbl.take(pa.array(np.repeat(uidx, lens)))
        items = np.concatenate([np.asarray(q.item_ids, dtype=np.int64) for q in queries])
        itbl = self.item_rows(items)
        times = pa.array(np.repeat([q.event_time for q in queries], lens), type=C.TIMESTAMP)
        drop = [c for c in (C.ITEM_ID, *itbl.column_names, C.EVENT_TIME) if c in rows.column_names]
        frame = rows.drop_columns(drop)
        for name in itbl.column_names:
            frame = frame.append_column(name, itbl.column(name))
        frame = frame.append_column(C.EVENT_TIME, times)
        seq_cols = [C.seq_col(b, C.ITEM_ID) for b in self.spec.behaviors]
        lengths = sum(np.asarray(pc.fill_null(pc.list_value_length(utbl.column(c)), 0)) for c in seq_cols)
        cold = np.asarray(lengths)[uidx] == 0
        return frame, cold

    def score(self, queries: Sequence[Query]) -> tuple[list[np.ndarray], list[bool]]:
        """Scores of every query's candidates (in request order) and whether each user was cold."""
        import numpy as np

        from models.predict import predict

        if not queries:
            return [], []
        frame, cold = self.frame(queries)
        with self.lock:  # one forward pass at a time per process; torch runs it on one thread
            scores = predict(self.model, self.spec, frame, batch_size=PREDICT_BATCH, device="cpu")
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


@bentoml.service(
    name="dacdr",
    http={"host": "127.0.0.1"},
    workers=1,
    threads=1,
    traffic={"timeout": 30},
    endpoints={"livez": "/healthz", "readyz": "/readyz"},
)
class DacdrService:
    """Ranks candidate items for a user of one target domain with that domain's DACDR model."""

    def __init__(self) -> None:
        """Load the model from the model store and open the Feast online store, once."""
        self.ready = False
        self.config = resolve_config(vars(bentoml.use_arguments()), dict(os.environ))
        started = time.perf_counter()
        self.ranker = Ranker.load(self.config.domain, self.config.model_tag, self.config.feast_workdir)
        self.load_seconds = time.perf_counter() - started
        self.ready = True

    def __is_ready__(self) -> bool:
        """Ready only once the model and the feature store are loaded."""
        return self.ready

    @bentoml.api(route="/rank")
    def rank(self, user_id: Id, item_ids: Candidates, event_time: dt.datetime | None = None) -> RankResponse:
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
