"""The scoring core, no HTTP: online features -> model inputs -> scores, and the ranked answer.

Also used in-process by the benchmark floor (benchmarks/serving.py) and the parity tests. Every
request builds the training-table frame for (user, candidates) from the Feast online store (for
DACDR: tensors straight from the packed view) and scores it with the path offline evaluation uses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml

from bento.config import (
    DEFAULT_ONLINE_BUSY_TIMEOUT_MS,
    ENV_ONLINE_BUSY_TIMEOUT_MS,
    read_positive_int,
    resolve_model_tag,
)
from bento.health import STORE_HEALTH, StoreUnavailable, store_errors
from bento.names import domain_checkpoint
from bento.schema import to_utc
from bento.store_watch import StoreWatch
from dacdr.threads import configure as configure_threads

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import torch
    from feast import FeatureService, FeatureStore
    from torch import nn

    from models.spec import FeatureSpec

# rows per forward pass: a whole 1000-candidate query in one pass, larger batches split
PREDICT_BATCH = 4096


@dataclass(frozen=True)
class Query:
    """A validated ranking query."""

    user_id: int
    item_ids: list[int]
    event_time: dt.datetime
    request_id: str = ""

    @classmethod
    def of(
        cls,
        user_id: int,
        item_ids: list[int],
        event_time: dt.datetime | None = None,
        request_id: str | None = None,
    ) -> Query:
        """A query at `event_time` (UTC; naive means UTC; None means now); ValueError naming a bad time.

        `request_id`: the caller's (validated by the schema), else a new uuid4 hex.
        """
        try:
            when = to_utc(event_time or dt.datetime.now(dt.UTC))
        except ValueError as exc:
            raise ValueError(f"event_time: {exc}") from None
        return cls(int(user_id), [int(i) for i in item_ids], when, request_id or uuid.uuid4().hex)


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


def load_model(domain: str, tag: str) -> tuple[str, nn.Module, FeatureSpec, dict[str, Any]]:
    """(full tag, model in eval mode, spec, meta) of a model of `domain` in the BentoML model store;
    ValueError when it belongs to another domain or was not trained for this one."""
    from models.checkpoint import load_checkpoint

    stored = bentoml.models.get(tag)
    model, spec, meta = load_checkpoint(domain_checkpoint(stored, domain), "cpu")
    model.eval()  # once: serving never trains
    if domain not in spec.domain_tasks:
        raise ValueError(f"model {stored.tag} was not trained for domain {domain!r}: {spec.domain_tasks}")
    return str(stored.tag), model, spec, meta


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
    watch: StoreWatch | None = None  # reopens a replaced store, bounds Redis calls (bento.store_watch)

    @classmethod
    def load(cls, domain: str, model_tag: str | None, feast_workdir: Path | str) -> Ranker:
        """Load the checkpoint from the BentoML model store and open the Feast store."""
        from features import store as fs
        from features.feature_repo.views import USER_PACKED

        tag = resolve_model_tag(domain, model_tag)
        loaded = load_model(domain, tag)  # before the store: a wrong model is named first
        # one intra-op thread per worker: requests are small (<= a few thousand rows) and the server
        # runs one worker per core; extra threads only contend (measured in benchmarks/serving.py)
        configure_threads(1)
        # Feast's SQLite store would create an empty file for a missing one: check it first
        fs.check_online_store(feast_workdir)
        store = fs.open_store(feast_workdir)
        busy_ms = read_positive_int(os.environ, ENV_ONLINE_BUSY_TIMEOUT_MS, DEFAULT_ONLINE_BUSY_TIMEOUT_MS)
        if hasattr(store.config.online_store, "busy_timeout_ms"):  # before the first read opens it
            store.config.online_store.busy_timeout_ms = busy_ms
        watch = StoreWatch.open(store, Path(feast_workdir), USER_PACKED)  # before the first read
        return cls.over(domain, loaded, store, Path(feast_workdir), watch)

    def with_model(self, model_tag: str) -> Ranker:
        """Another model of the same domain over this ranker's open store (an A/B arm)."""
        loaded = load_model(self.domain, model_tag)
        return self.over(self.domain, loaded, self.store, self.feast_workdir, self.watch)

    @classmethod
    def over(
        cls,
        domain: str,
        loaded: tuple[str, nn.Module, FeatureSpec, dict[str, Any]],
        store: FeatureStore,
        feast_workdir: Path | None,
        watch: StoreWatch | None,
    ) -> Ranker:
        """A ranker of a loaded model over an open store; reads the model's known items' side info."""
        import pandas as pd
        import pyarrow as pa

        from features import online
        from features.feature_repo.services import DACDR_V1

        tag, model, spec, meta = loaded
        # item side info is a dimension table: read it for every item the model knows, once;
        # items the model has never seen are looked up in the online store per request.
        known = [int(i) for i in spec.items.ids]
        cache = pa.Table.from_pandas(online.item_features(store, known), preserve_index=False)
        cache = cache.replace_schema_metadata(None)
        return cls(
            domain=domain,
            model_tag=tag,
            model=model,
            spec=spec,
            meta=meta,
            store=store,
            feature_service=store.get_feature_service(DACDR_V1),
            item_cache=cache,
            item_cache_ids=pd.Index(known),
            feast_workdir=feast_workdir,
            watch=watch,
        )

    def probe(self) -> str | None:
        """None when the online store can serve now, else why not (StoreWatch.problem)."""
        if self.watch is None:
            return None
        busy_ms = read_positive_int(os.environ, ENV_ONLINE_BUSY_TIMEOUT_MS, DEFAULT_ONLINE_BUSY_TIMEOUT_MS)
        return self.watch.problem(busy_ms)

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
        watch = self.watch
        try:
            with watch.lock if watch is not None else contextlib.nullcontext():
                try:
                    if watch is not None:
                        watch.check()
                    scores, cold = self.predict(queries)
                except store_errors():
                    if watch is not None:  # the next request opens the store afresh
                        watch.reset()
                    raise
        except store_errors() as exc:
            STORE_HEALTH.reason = f"online store unavailable: {type(exc).__name__}: {exc}"
            raise StoreUnavailable(STORE_HEALTH.reason) from exc
        STORE_HEALTH.reason = None
        bounds = np.cumsum([0, *[len(q.item_ids) for q in queries]])
        parts = [scores[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        return parts, [bool(c) for c in cold]
