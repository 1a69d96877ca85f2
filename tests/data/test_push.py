"""Same-day pushes: merging equals building from scratch, replays change nothing, Feast's push agrees."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from features import contract as C
from features import io, materialize, online
from features import store as fs
from features.packed import unpack
from features.push import day_behaviors, push
from features.sequences import merge_sequences, sequence_columns, sequence_snapshots


def _days(logs: Path) -> list[str]:
    """The behaviour days of a landing zone, sorted."""
    return sorted({p.dt for p in io.data_partitions(logs, C.BEHAVIORS)})


def _latest(snaps: pa.Table) -> pa.Table:
    """The last snapshot row per user, without snapshot_time."""
    users = snaps.column(C.USER_ID).to_numpy()
    last = np.append(users[1:] != users[:-1], True)
    return snaps.filter(pa.array(last)).drop_columns([C.SNAPSHOT_TIME])


def _online_rows(workdir: Path) -> dict[str, list[tuple]]:
    """Every row of every online table, sorted (to compare whole stores)."""
    with sqlite3.connect(fs.online_store_file(workdir)) as conn:
        return {
            t: sorted(conn.execute(f'SELECT entity_key, feature_name, value, event_ts FROM "{t}"').fetchall())
            for t in fs.online_tables()
        }


@pytest.mark.parametrize("cut_hour", [0, 13])
def test_merge_equals_building_from_all_events(tiny_logs: Path, cut_hour: int) -> None:
    """Lists as of midnight D merged with day D (in one or two pushes) == the snapshots of every event;
    merging the same day again changes nothing."""
    beh = io.read_table(tiny_logs, C.BEHAVIORS)
    items, domains = io.read_table(tiny_logs, C.ITEMS), io.read_table(tiny_logs, C.DOMAINS)
    day = _days(tiny_logs)[-2]
    midnight = pd.Timestamp(day, tz="UTC")
    cut = midnight + pd.Timedelta(hours=cut_hour)
    end = midnight + pd.Timedelta(days=1)
    t = beh.column(C.EVENT_TIME)
    before = beh.filter(pc.less(t, pa.scalar(midnight, C.TIMESTAMP)))
    first = beh.filter(pc.and_(pc.greater_equal(t, pa.scalar(midnight, C.TIMESTAMP)),
                               pc.less(t, pa.scalar(cut, C.TIMESTAMP))))
    second = beh.filter(pc.and_(pc.greater_equal(t, pa.scalar(cut, C.TIMESTAMP)),
                                pc.less(t, pa.scalar(end, C.TIMESTAMP))))
    current = _latest(sequence_snapshots(before, items, domains, 20))
    merged = merge_sequences(current, first, items, domains, 20)
    merged = merge_sequences(merged, second, items, domains, 20)
    want = _latest(sequence_snapshots(pa.concat_tables([before, first, second]), items, domains, 20))
    assert merged.num_rows == want.num_rows > 0
    assert merged.to_pylist() == want.to_pylist()
    again = merge_sequences(merged, pa.concat_tables([first, second]), items, domains, 20)
    assert again.to_pylist() == merged.to_pylist()


def test_push_then_replay_and_feasts_own_push(feast_workdir: Path, tiny_logs: Path, tmp_path: Path) -> None:
    """A push makes the online lists those of every event so far; a replay changes no byte; Feast's
    FeatureStore.push of the same rows through the push sources leaves the same online store."""
    ours, feasts = tmp_path / "ours", tmp_path / "feasts"
    for dst in (ours, feasts):
        shutil.copytree(fs.data_dir(feast_workdir), fs.data_dir(dst), ignore=shutil.ignore_patterns("*.db"))
        fs.render_repo(dst)
        fs.apply(dst)
    day = _days(tiny_logs)[-1]
    midnight = datetime.fromisoformat(day).replace(tzinfo=UTC)
    for dst in (ours, feasts):
        materialize.materialize(dst, midnight)
    noon = midnight + timedelta(hours=12)
    result = push(tiny_logs, day, ours, until=noon)
    events = day_behaviors(tiny_logs, day, noon)
    assert result.events == events.num_rows > 0 and 0 < result.changed <= result.users
    users = np.unique(events.column(C.USER_ID).to_numpy()).tolist()
    beh = io.read_table(tiny_logs, C.BEHAVIORS)
    so_far = beh.filter(pc.less(beh.column(C.EVENT_TIME), pa.scalar(noon, C.TIMESTAMP)))
    snaps = sequence_snapshots(so_far, io.read_table(tiny_logs, C.ITEMS), io.read_table(tiny_logs, C.DOMAINS))
    want = _latest(snaps)
    want = want.filter(pc.is_in(want.column(C.USER_ID), pa.array(users)))
    got = unpack(online.packed_sequences(ours, want.column(C.USER_ID).to_pylist()))
    assert got.to_pylist() == want.select(sequence_columns()).to_pylist()
    per_field = online.online_features(ours, users, "fashion_feed")
    every = unpack(online.packed_sequences(ours, users))
    for col in sequence_columns():
        assert every.column(col).to_pylist() == [list(x) for x in per_field[col]], col
    state = _online_rows(ours)
    replay = push(tiny_logs, day, ours, until=noon)
    assert replay.changed == 0 and _online_rows(ours) == state

    # the same rows through Feast's own push API and the views' push sources
    from feast.data_source import PushMode

    from features.feature_repo.sources import USER_PACKED_PUSH, USER_SEQUENCES_PUSH
    from features.feature_repo.views import USER_PACKED, USER_SEQUENCES

    held = want.column(C.USER_ID).to_pylist()  # users with source behaviour: rows exist for them
    store = fs.open_store(feasts)
    for view, source in ((USER_SEQUENCES, USER_SEQUENCES_PUSH), (USER_PACKED, USER_PACKED_PUSH)):
        store.push(source, _rows_of(ours, view, held), to=PushMode.ONLINE)
    assert _online_rows(feasts) == state


def _rows_of(workdir: Path, view: str, users: list[int]) -> pd.DataFrame:
    """`view`'s online rows of `users` with their event timestamps, read back through Feast."""
    store = fs.open_store(workdir)
    names = [f.name for f in store.get_feature_view(view).features]
    got = store.get_online_features(
        features=[f"{view}:{n}" for n in names], entity_rows={C.USER_ID: users}
    ).to_dict(include_event_timestamps=True)
    frame = pd.DataFrame({C.USER_ID: users, **{n: got[n] for n in names}})
    frame[C.SNAPSHOT_TIME] = pd.to_datetime(got[f"{names[0]}__ts"], unit="s", utc=True)
    return frame
