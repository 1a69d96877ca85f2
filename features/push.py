"""Same-day behaviour into the online store: Feast pushes of each touched user's merged lists.

Daily materialization serves the lists as of the last midnight. `push` reads a day's source-domain
behaviours (up to `until`), merges them into the users' online lists with the one sequence
function (features.sequences.merge_sequences: event order, max_len, an event already held counts
once) and writes the changed users to both sequence views (the per-field view other teams read and
the packed view the ranker reads), with the writer materialize uses (features.materialize.write_online).
Both views' sources are Feast push sources (user_sequences_push, user_packed_push), so a streaming
job may push the same rows with Feast's own `FeatureStore.push` instead: the online state is the
same (tested). Replaying a push changes nothing.

A pushed row is stamped at the next whole second after its newest event (a snapshot holds events
strictly before its time, so this row is a snapshot as of then); the next midnight's snapshot
supersedes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features import io
from features import store as fs


@dataclass(frozen=True)
class PushResult:
    """What a push read and wrote."""

    events: int  # behaviour rows of the day (up to `until`) read from the logs
    users: int  # distinct users among them
    changed: int  # users whose lists changed, i.e. rows pushed to each sequence view
    seconds: float


def day_behaviors(logs: Path | str, dt: str, until: datetime | None = None) -> pa.Table:
    """One day's behaviour rows (contract-typed), only those with event_time < until when given."""
    behaviors = io.read_table(logs, C.BEHAVIORS, dt)
    if until is not None:
        bound = pa.scalar(fs.utc(until), C.TIMESTAMP)
        behaviors = behaviors.filter(pc.less(behaviors[C.EVENT_TIME], bound))
    return behaviors


def push(logs: Path | str, dt: str, workdir: Path | str, until: datetime | None = None) -> PushResult:
    """Append day `dt`'s source behaviours (before `until`) to the online sequences of `workdir`'s store."""
    from features import materialize, online
    from features.feature_repo.views import USER_PACKED, USER_SEQUENCES
    from features.packed import pack, packed_snapshots, unpack
    from features.sequences import merge_sequences

    t0 = time.perf_counter()
    behaviors = day_behaviors(logs, dt, until)
    store = fs.open_store(workdir)
    users = np.unique(np.asarray(behaviors[C.USER_ID], dtype=np.int64))
    if not len(users):
        return PushResult(events=0, users=0, changed=0, seconds=time.perf_counter() - t0)
    current = unpack(online.packed_sequences(store, users.tolist()))
    current = current.add_column(0, C.USER_ID, pa.array(users))
    items, domains = io.read_table(logs, C.ITEMS), io.read_table(logs, C.DOMAINS)
    merged = merge_sequences(current, behaviors, items, domains, fs.built_max_len(workdir))
    # only users whose lists changed: a replay (or a day of non-source behaviour) writes nothing
    before = current.take(pa.array(np.searchsorted(users, np.asarray(merged[C.USER_ID]))))
    changed = pc.not_equal(pack(merged), pack(before))
    rows = merged.filter(changed)
    if rows.num_rows:
        # the next whole second after the newest event: Feast reports online timestamps in seconds
        second = 1_000_000
        stamp_us = (newest_event_us(rows) // second + 1) * second
        stamp = pa.array(stamp_us, pa.int64()).cast(pa.timestamp("us")).cast(C.TIMESTAMP)
        rows = rows.add_column(1, C.SNAPSHOT_TIME, stamp)
        materialize.write_online(store, store.get_feature_view(USER_SEQUENCES), rows)
        materialize.write_online(store, store.get_feature_view(USER_PACKED), packed_snapshots(rows))
    return PushResult(
        events=behaviors.num_rows, users=len(users), changed=rows.num_rows, seconds=time.perf_counter() - t0
    )


def newest_event_us(seqs: pa.Table) -> np.ndarray:
    """Per row, the newest element time (epoch us) over every behaviour's list (lists are time-ordered)."""
    newest = np.full(seqs.num_rows, np.iinfo(np.int64).min, dtype=np.int64)
    for b in C.BEHAVIOR_TYPES:
        col = seqs[C.seq_col(b, C.EVENT_TIME)].combine_chunks()
        lens = np.asarray(pc.list_value_length(col), dtype=np.int64)
        values = np.asarray(pc.list_flatten(col), dtype=np.int64)
        ends = np.cumsum(lens) - 1
        has = lens > 0
        newest[has] = np.maximum(newest[has], values[ends[has]])
    return newest
