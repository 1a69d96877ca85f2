"""The served-ranking log: one row per returned (or shadow-scored) item, as partitioned parquet.

    <served_log_dir>/served/dt=YYYY-MM-DD/part-<uuid>.parquet

Columns (SCHEMA): request_id, event_time (the request's), domain, user_id, item_id, position
(1-based), score, model_tag, arm, experiment_id (null without an experiment), propensity, explore.
A request hands its rows to a bounded queue (put_nowait: a few microseconds, never a wait); one
background thread per worker gathers them and writes one file per day partition every
FLUSH_SECONDS (or MAX_PENDING_ROWS), via a hidden temporary file renamed into place, so readers
never see half a file. A full queue or a failing sink (disk full, folder gone) drops rows, counted
on /metrics (dacdr_served_log_rows_dropped_total beside ..._written_total); it never fails or
slows a request. close() flushes what is queued (server shutdown).

BentoML's own data logging (bentoml.monitor) writes one JSON log record per field value through
Python logging: per row and not parquet, so this writer is used instead (docs/serving.md).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger("bentoml.dacdr")

ENV_SERVED_LOG_DIR = "DACDR_SERVED_LOG_DIR"
SERVED = "served"
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("model_tag", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("experiment_id", pa.string(), nullable=True),
        pa.field("propensity", pa.float64(), nullable=False),
        pa.field("explore", pa.bool_(), nullable=False),
    ]
)
QUEUE_RESPONSES = 4096  # responses waiting for the writer; beyond it rows are dropped, counted
FLUSH_SECONDS = 1.0
MAX_PENDING_ROWS = 200_000


@dataclass(frozen=True)
class ServedRows:
    """The rows of one answered (or shadow-scored) ranking: scalars once, per-item arrays."""

    request_id: str
    event_time_us: int  # microseconds since the epoch, UTC
    day: str  # YYYY-MM-DD of event_time: the partition
    domain: str
    user_id: int
    model_tag: str
    arm: str
    experiment_id: str | None
    explore: bool
    item_ids: np.ndarray  # int64, in served order
    scores: np.ndarray  # float64
    propensities: np.ndarray  # float64

    def table(self) -> pa.Table:
        """These rows as a table of SCHEMA (vectorised: scalars repeated by arrow, not Python)."""
        n = len(self.item_ids)

        def rep(value: object, typ: pa.DataType) -> pa.Array:
            """`value` n times."""
            return pa.repeat(pa.scalar(value, type=typ), n)

        return pa.Table.from_arrays(
            [
                rep(self.request_id, pa.string()),
                pa.repeat(pa.scalar(self.event_time_us, type=pa.timestamp("us", tz="UTC")), n),
                rep(self.domain, pa.string()),
                rep(self.user_id, pa.int64()),
                pa.array(self.item_ids, type=pa.int64()),
                pa.array(np.arange(1, n + 1, dtype=np.int32)),
                pa.array(self.scores, type=pa.float64()),
                rep(self.model_tag, pa.string()),
                rep(self.arm, pa.string()),
                rep(self.experiment_id, pa.string()),
                pa.array(self.propensities, type=pa.float64()),
                rep(self.explore, pa.bool_()),
            ],
            schema=SCHEMA,
        )


class ServedLog:
    """A bounded queue of ServedRows and the thread that writes them (see the module docstring)."""

    def __init__(
        self,
        root: Path | str,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        capacity: int = QUEUE_RESPONSES,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        """Log under <root>/served; the callbacks count rows written and dropped (metrics)."""
        self.root = Path(root) / SERVED
        self.queue: queue.Queue[ServedRows | None] = queue.Queue(maxsize=capacity)
        self.flush_seconds = flush_seconds
        self.on_written = on_written or (lambda n: None)
        self.on_dropped = on_dropped or (lambda n: None)
        self.written = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="dacdr-served-log", daemon=True)
        self._thread.start()

    def put(self, rows: ServedRows) -> None:
        """Queue one ranking's rows; when the queue is full they are dropped and counted."""
        try:
            self.queue.put_nowait(rows)
        except queue.Full:
            self._drop(len(rows.item_ids))

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread.is_alive():
            try:
                self.queue.put(None, timeout=timeout)
            except queue.Full:  # the writer is stuck: what is queued is lost, counted at exit
                return
            self._thread.join(timeout)

    def _drop(self, n: int) -> None:
        """Count n dropped rows."""
        with self._lock:
            self.dropped += n
        self.on_dropped(n)

    def _run(self) -> None:
        """Gather queued rows and flush them every flush_seconds, until close()."""
        pending: list[ServedRows] = []
        rows = 0
        stop = False
        while not stop:
            try:
                item = self.queue.get(timeout=self.flush_seconds)
                while True:  # drain whatever else is there without waiting
                    if item is None:
                        stop = True
                        break
                    pending.append(item)
                    rows += len(item.item_ids)
                    if rows >= MAX_PENDING_ROWS:
                        break
                    item = self.queue.get_nowait()
            except queue.Empty:
                pass
            if pending:
                self._flush(pending, rows)
                pending, rows = [], 0

    def _flush(self, pending: list[ServedRows], rows: int) -> None:
        """Write the pending rows, one file per day; a failing sink drops them, counted."""
        by_day: dict[str, list[ServedRows]] = {}
        for item in pending:
            by_day.setdefault(item.day, []).append(item)
        for day, items in by_day.items():
            n = sum(len(i.item_ids) for i in items)
            try:
                self._write(day, pa.concat_tables([i.table() for i in items]))
            except Exception as exc:  # noqa: BLE001  # any sink failure costs log rows, never the service
                logger.warning("served log: %d rows dropped (%s: %s)", n, type(exc).__name__, exc)
                self._drop(n)
                continue
            with self._lock:
                self.written += n
            self.on_written(n)

    def _write(self, day: str, table: pa.Table) -> Path:
        """One parquet file in the day's partition, renamed into place when complete."""
        folder = self.root / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = folder / f".{name}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        return folder / name
