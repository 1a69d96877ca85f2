"""Feast feature store: parity with the direct training table, no lost labels, online, HTTP, Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dacdr.processes import free_port
from features import contract as C
from features import io, materialize, offline, online
from features import store as fs
from features.feature_repo.batched_sqlite import STORE_TYPE
from features.feature_repo.services import DACDR_V1
from features.feature_repo.sources import DATA_FILES, USER_ACTIVITY_FILE, USER_SEQUENCES_FILE
from features.feature_repo.views import (
    DAYS_ACTIVE,
    DOMAIN_FEATURES,
    ITEM_SIDE_INFO,
    LAST_SEEN,
    USER_ACTIVITY,
    USER_PACKED,
    USER_SEQUENCES,
    activity_count_col,
    item_columns,
)
from features.sequences import attach_sequences, sequence_columns, sequence_snapshots
from tests.data.conftest import stop, wait_for_port

SEQS = sequence_columns()


def _latest_snapshots(workdir: Path, name: str, before: pd.Timestamp | None = None) -> pd.DataFrame:
    """The latest row per user of a snapshot parquet (optionally only snapshots <= before), by user_id."""
    frame = pq.read_table(fs.data_dir(workdir) / name).to_pandas(types_mapper=_list_dtype)
    if before is not None:
        frame = frame[frame[C.SNAPSHOT_TIME] <= before]
    return frame.sort_values(C.SNAPSHOT_TIME).groupby(C.USER_ID).tail(1).set_index(C.USER_ID)


def _list_dtype(t: pa.DataType) -> pd.ArrowDtype | None:
    """Arrow-backed pandas dtype for list columns."""
    return pd.ArrowDtype(t) if pa.types.is_list(t) else None


def _some_users(workdir: Path, n: int) -> list[int]:
    """n users that have snapshots (deterministic)."""
    users = _latest_snapshots(workdir, USER_SEQUENCES_FILE).index.to_numpy()
    return [int(u) for u in np.sort(users)[:: max(1, len(users) // n)][:n]]


def test_repo_is_rendered_with_duckdb_sqlite_and_applied(feast_workdir: Path) -> None:
    """The rendered yaml uses the duckdb offline store and SQLite registry/online; apply registered all."""
    yaml = (fs.repo_dir(feast_workdir) / fs.YAML_NAME).read_text()
    assert "type: duckdb" in yaml and "registry_type: sql" in yaml and "sqlite:///" in yaml
    assert f"type: {STORE_TYPE}" in yaml  # Feast's SQLite online store with batched writes
    assert "type: file" not in yaml
    for name in (*DATA_FILES, fs.REGISTRY_FILE):
        assert (fs.data_dir(feast_workdir) / name).is_file(), name
    store = fs.open_store(feast_workdir)
    views = {v.name for v in store.list_feature_views()}
    assert views == {USER_SEQUENCES, USER_ACTIVITY, USER_PACKED, ITEM_SIDE_INFO, DOMAIN_FEATURES}
    service = store.get_feature_service(DACDR_V1)
    assert {p.name for p in service.feature_view_projections} == {
        USER_SEQUENCES,
        USER_ACTIVITY,
        DOMAIN_FEATURES,
    }
    # sources point inside the workdir (absolute), so the store works from any current directory
    for view in store.list_feature_views():
        assert Path(view.batch_source.path).is_absolute()
        assert Path(view.batch_source.path).parent == fs.data_dir(feast_workdir)


def test_training_table_through_feast_equals_direct_build(feast_workdir: Path, tiny_logs: Path) -> None:
    """Parity: get_historical_features gives the direct training table row for row, list columns included."""
    from features.dataset import build_training_table

    direct = build_training_table(tiny_logs)
    via_feast = offline.historical_training_table(feast_workdir, tiny_logs)
    assert list(via_feast.columns) == list(direct.columns)
    assert len(via_feast) == len(direct) > 1000
    assert (via_feast[SEQS[0]].list.len() > 0).any()  # not all-empty sequences
    pd.testing.assert_frame_equal(via_feast, direct, check_exact=True)


def test_no_label_row_lost_for_unknown_users_and_early_rows(feast_workdir: Path, tiny_logs: Path) -> None:
    """Entity rows with no snapshot at all, or before any snapshot, and duplicates all come back, in order."""
    imps = io.read_table(tiny_logs, C.IMPRESSIONS).to_pandas().iloc[:300]
    early = imps.iloc[:5].assign(**{C.EVENT_TIME: pd.Timestamp("2020-01-01", tz="UTC")})
    unknown = imps.iloc[5:10].assign(**{C.USER_ID: np.arange(1, 6)})
    rows = pd.concat([unknown, imps, early, imps.iloc[:3]], ignore_index=True)
    rows.index = rows.index * 7 + 3  # a non-default index must be kept
    got = offline.historical_features(feast_workdir, rows)
    assert len(got) == len(rows)
    assert got.index.equals(rows.index)
    pd.testing.assert_series_equal(got[C.LABEL], rows[C.LABEL])
    pd.testing.assert_series_equal(got[C.REQUEST_ID], rows[C.REQUEST_ID])
    lost = got.iloc[list(range(5)) + list(range(305, 310))]
    assert (lost[SEQS].map(len) == 0).all().all()  # empty lists, not nulls
    assert lost[activity_count_col("browse")].isna().all()
    # the same as-of answer as features.sequences, for every row
    snaps = sequence_snapshots(
        io.read_table(tiny_logs, C.BEHAVIORS),
        io.read_table(tiny_logs, C.ITEMS),
        io.read_table(tiny_logs, C.DOMAINS),
    )
    ref = attach_sequences(rows, snaps)
    for col in SEQS:
        pd.testing.assert_series_equal(got[col], ref[col])


def test_online_features_one_call_match_latest_snapshot(feast_workdir: Path, tiny_logs: Path) -> None:
    """online_features gives sequences, activity and domain features per user; unknown users: empty lists."""
    users = _some_users(feast_workdir, 20)
    domain = "fashion_feed"
    got = online.online_features(feast_workdir, [*users, 1], domain)
    assert got[C.USER_ID].tolist() == [*users, 1]
    seqs = _latest_snapshots(feast_workdir, USER_SEQUENCES_FILE).loc[users]
    for col in SEQS:
        assert got[col].iloc[:-1].tolist() == seqs[col].tolist(), col
        assert list(got[col].iloc[-1]) == []
    stats = _latest_snapshots(feast_workdir, USER_ACTIVITY_FILE).loc[users]
    for col in [activity_count_col(b) for b in C.BEHAVIOR_TYPES] + [DAYS_ACTIVE, LAST_SEEN]:
        assert got[col].iloc[:-1].tolist() == stats[col].tolist(), col
        assert pd.isna(got[col].iloc[-1])
    domains = io.read_table(tiny_logs, C.DOMAINS).to_pandas().set_index(C.DOMAIN)
    for feat in C.domain_feature_columns(list(domains.reset_index().columns)):
        assert (got[C.domain_feature_col(feat)] == domains.loc[domain, feat]).all()
    assert (got[C.ROLE] == C.ROLE_TARGET).all()


def test_item_features_and_bad_input(feast_workdir: Path, tiny_logs: Path, tmp_path: Path) -> None:
    """item_features equals the items table (unknown ids null); bad input gets a clear error."""
    items = io.read_table(tiny_logs, C.ITEMS).to_pandas().set_index(C.ITEM_ID)
    ids = [int(i) for i in items.index[:50]] + [7]
    got = online.item_features(feast_workdir, ids)
    assert got[C.ITEM_ID].tolist() == ids
    for col in item_columns():
        expect = items.loc[ids[:-1], col].astype(got[col].dtype)
        pd.testing.assert_series_equal(got[col].iloc[:-1], expect.reset_index(drop=True), check_names=False)
        assert pd.isna(got[col].iloc[-1])
    with pytest.raises(fs.FeatureStoreError, match="dacdr features build"):
        fs.open_store(tmp_path / "nowhere")
    fresh = tmp_path / "fresh"
    fs.data_dir(fresh).mkdir(parents=True)
    for name in DATA_FILES:
        (fs.data_dir(fresh) / name).write_bytes((fs.data_dir(feast_workdir) / name).read_bytes())
    fs.render_repo(fresh)
    with pytest.raises(fs.FeatureStoreError, match="dacdr features apply"):
        materialize.materialize(fresh)  # built but never applied: nothing would be written
    with pytest.raises(ValueError, match="redis url"):
        fs.OnlineConfig(kind="redis")
    with pytest.raises(C.ContractError, match="invalid domain name"):
        online.online_features(feast_workdir, [1], "Bad Domain")
    with pytest.raises(C.ContractError, match="event_time"):
        offline.historical_features(feast_workdir, pd.DataFrame({C.USER_ID: [1], C.DOMAIN: ["x"]}))
    with pytest.raises(fs.FeatureStoreError, match="max_len"):
        too_long = fs.built_max_len(feast_workdir) + 1
        offline.historical_training_table(feast_workdir, tiny_logs, max_len=too_long)


def test_serialized_batches_hold_the_bytes_feast_writes(feast_workdir: Path) -> None:
    """serialize_batch (materialize's column-wise path) == Feast's own protos, serialized, for every view."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.utils import _convert_arrow_to_proto

    from features.feature_repo.serialized import serialize_batch

    store = fs.open_store(feast_workdir)
    version = store.config.entity_key_serialization_version
    for view in store.list_feature_views():
        tbl = pq.read_table(view.batch_source.path).slice(0, 200).combine_chunks()
        batch = tbl.to_batches()[0]
        ours = serialize_batch(batch, view, version)
        types = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
        theirs = _convert_arrow_to_proto(batch, view, types)
        assert len(ours.keys) == len(theirs) == min(200, tbl.num_rows)
        assert ours.keys == [serialize_entity_key(t[0], version) for t in theirs], view.name
        for name, values in ours.values.items():
            assert values == [t[1][name].SerializeToString() for t in theirs], (view.name, name)
        for a, b in zip(ours.event_ts, theirs, strict=True):
            assert pd.Timestamp(a) == pd.Timestamp(b[2]).tz_localize(None), view.name


def test_materialize_writes_what_feast_materialize_writes(feast_workdir: Path, tmp_path: Path) -> None:
    """The online tables after dacdr's materialize equal those after Feast's FeatureStore.materialize."""
    import shutil
    import sqlite3
    from datetime import UTC, datetime

    theirs = tmp_path / "feast_path"
    shutil.copytree(fs.data_dir(feast_workdir), fs.data_dir(theirs), ignore=shutil.ignore_patterns("*.db"))
    fs.render_repo(theirs)
    fs.apply(theirs)
    # the fixture materialized feast_workdir up to its build time; every row is older than that
    fs.open_store(theirs).materialize(start_date=fs.EPOCH, end_date=datetime.now(UTC))

    def rows(workdir: Path, table: str) -> list[tuple]:
        """Every (entity, feature, value, text, event time) of one online table, sorted."""
        with sqlite3.connect(fs.online_store_file(workdir)) as conn:
            sql = f'SELECT entity_key, feature_name, value, value_text, event_ts FROM "{table}"'
            return sorted(conn.execute(sql).fetchall())

    for table in fs.online_tables():
        ours = rows(feast_workdir, table)
        assert ours and ours == rows(theirs, table), table


def test_activity_statistics_match_a_brute_force_count(feast_workdir: Path, tiny_logs: Path) -> None:
    """user_activity rows count exactly the source behaviours strictly before each snapshot."""
    stats = pq.read_table(fs.data_dir(feast_workdir) / USER_ACTIVITY_FILE).to_pandas()
    snaps = pq.read_table(
        fs.data_dir(feast_workdir) / USER_SEQUENCES_FILE, columns=[C.USER_ID, C.SNAPSHOT_TIME]
    )
    assert stats[[C.USER_ID, C.SNAPSHOT_TIME]].equals(snaps.to_pandas())  # same (user, day) keys
    beh = io.read_table(tiny_logs, C.BEHAVIORS).to_pandas()
    dom = io.read_table(tiny_logs, C.DOMAINS).to_pandas()
    beh = beh[beh[C.DOMAIN].isin(dom.loc[dom[C.ROLE] == C.ROLE_SOURCE, C.DOMAIN])]
    sample = stats.sample(n=300, random_state=0)
    pairs = sample[[C.USER_ID, C.SNAPSHOT_TIME]].merge(beh, on=C.USER_ID)
    pairs = pairs[pairs[C.EVENT_TIME] < pairs[C.SNAPSHOT_TIME]]
    grouped = pairs.groupby([C.USER_ID, C.SNAPSHOT_TIME])
    ref = grouped[C.BEHAVIOR].value_counts().unstack(fill_value=0)
    ref[DAYS_ACTIVE] = grouped[C.EVENT_TIME].agg(lambda t: t.dt.floor("D").nunique())
    ref[LAST_SEEN] = grouped[C.EVENT_TIME].max().astype("datetime64[us, UTC]").astype("int64")
    ref = ref.reindex(pd.MultiIndex.from_frame(sample[[C.USER_ID, C.SNAPSHOT_TIME]]))
    for b in C.BEHAVIOR_TYPES:
        expect = ref[b] if b in ref.columns else pd.Series(0, index=ref.index)
        assert sample[activity_count_col(b)].tolist() == expect.tolist(), b
    assert sample[DAYS_ACTIVE].tolist() == ref[DAYS_ACTIVE].tolist()
    assert sample[LAST_SEEN].tolist() == ref[LAST_SEEN].tolist()


def test_feature_server_over_http(feast_workdir: Path) -> None:
    """`dacdr features serve` runs Feast's HTTP server on 127.0.0.1; POST /get-online-features answers."""
    users = _some_users(feast_workdir, 3)
    port = free_port()
    cmd = [sys.executable, "-m", "dacdr.cli", "features", "serve", "--workdir", str(feast_workdir)]
    proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, timeout=90)
        body = {"feature_service": DACDR_V1, "entities": {C.USER_ID: users, C.DOMAIN: ["fashion_feed"] * 3}}
        resp = httpx.post(f"http://127.0.0.1:{port}/get-online-features", json=body, timeout=30)
    finally:
        stop(proc)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    names = answer["metadata"]["feature_names"]
    values = {n: r["values"] for n, r in zip(names, answer["results"], strict=True)}
    expect = online.online_features(feast_workdir, users, "fashion_feed")
    assert values[C.USER_ID] == users
    for col in (SEQS[0], SEQS[-1], activity_count_col("click"), C.domain_feature_col("page_type")):
        want = [v.tolist() if hasattr(v, "tolist") else v for v in expect[col]]
        assert [v if v is not None else [] for v in values[col]] == want or values[col] == want, col


@pytest.mark.redis
def test_redis_online_store_incremental(
    redis_url: str, feast_workdir: Path, tiny_logs: Path, tmp_path: Path
) -> None:
    """--online redis: same answers as SQLite; materialize resumes where the previous window ended."""
    workdir = tmp_path / "redis_store"
    fs.build(tiny_logs, workdir, online=fs.OnlineConfig(kind=fs.ONLINE_REDIS, redis_url=redis_url))
    from features.feature_repo.pipelined_redis import STORE_TYPE as REDIS_TYPE

    assert f"type: {REDIS_TYPE}" in (fs.repo_dir(workdir) / fs.YAML_NAME).read_text()
    fs.apply(workdir)
    cut = pd.Timestamp("2026-09-05", tz="UTC")
    first = materialize.materialize(workdir, cut.to_pydatetime())
    users = _some_users(workdir, 15)
    early = online.online_features(workdir, users, "home_living")
    snaps = _latest_snapshots(workdir, USER_SEQUENCES_FILE, before=cut)
    for u, seq in zip(users, early[SEQS[0]], strict=True):
        assert list(seq) == (list(snaps.loc[u, SEQS[0]]) if u in snaps.index else [])
    second = materialize.materialize(workdir)
    assert 0 < second.rows[USER_SEQUENCES] <= first.rows[USER_SEQUENCES] + len(users) * 100
    got = online.online_features(workdir, users, "home_living")
    ref = online.online_features(feast_workdir, users, "home_living")
    pd.testing.assert_frame_equal(got, ref)
    assert online.packed_sequences(workdir, users) == online.packed_sequences(feast_workdir, users)


def test_materialize_only_some_views(feast_workdir: Path, tmp_path: Path) -> None:
    """--view: only the named views are loaded (the others keep no interval); unknown names are named."""
    import shutil

    work = tmp_path / "some"
    shutil.copytree(fs.data_dir(feast_workdir), fs.data_dir(work), ignore=shutil.ignore_patterns("*.db"))
    fs.render_repo(work)
    fs.apply(work)
    result = materialize.materialize(work, views=[USER_PACKED, DOMAIN_FEATURES])
    assert set(result.rows) == {USER_PACKED, DOMAIN_FEATURES} and result.rows[USER_PACKED] > 0
    users = _some_users(feast_workdir, 5)
    assert online.packed_sequences(work, users) == online.packed_sequences(feast_workdir, users)
    later = materialize.materialize(work)  # the rest follow; the packed view resumes after its own window
    assert later.rows[USER_PACKED] == 0 and later.rows[USER_SEQUENCES] == result.rows[USER_PACKED]
    with pytest.raises(fs.FeatureStoreError, match=r"no feature view\(s\) \['nope'\]"):
        materialize.materialize(work, views=["nope"])


@pytest.mark.redis
def test_redis_push_equals_sqlite_push(redis_url: str, tiny_logs: Path, tmp_path: Path) -> None:
    """A push into the pipelined Redis store leaves the same online features as into SQLite."""
    from datetime import UTC, datetime

    from features.push import push

    day = sorted({p.dt for p in io.data_partitions(tiny_logs, C.BEHAVIORS)})[-1]
    midnight = datetime.fromisoformat(day).replace(tzinfo=UTC)
    stores = {
        "sqlite": fs.OnlineConfig(),
        "redis": fs.OnlineConfig(kind=fs.ONLINE_REDIS, redis_url=redis_url.rsplit("/", 1)[0] + "/1"),
    }
    results = {}
    for name, config in stores.items():
        fs.build(tiny_logs, tmp_path / name, online=config)
        fs.apply(tmp_path / name)
        materialize.materialize(tmp_path / name, midnight)
        results[name] = push(tiny_logs, day, tmp_path / name)
    assert results["redis"].changed == results["sqlite"].changed > 0
    users = [int(u) for u in np.unique(io.read_table(tiny_logs, C.BEHAVIORS, day).column(C.USER_ID))[:40]]
    pd.testing.assert_frame_equal(
        online.online_features(tmp_path / "redis", users, "fashion_feed"),
        online.online_features(tmp_path / "sqlite", users, "fashion_feed"),
    )
    redis_blobs = online.packed_sequences(tmp_path / "redis", users)
    assert redis_blobs == online.packed_sequences(tmp_path / "sqlite", users)
    assert push(tiny_logs, day, tmp_path / "redis").changed == 0


def test_moved_workdir_uses_its_own_registry_and_online_store(
    feast_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """feature_store.yaml holds no absolute path: a copied, then moved workdir opens its own registry
    (resolved against the repo, not the current directory) and serves the same online features."""
    import shutil

    yaml = (fs.repo_dir(feast_workdir) / fs.YAML_NAME).read_text()
    assert str(feast_workdir) not in yaml and f"sqlite:///{fs.DATA_DIRNAME}/{fs.REGISTRY_FILE}" in yaml
    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "moved"
    shutil.copytree(feast_workdir, first)
    moved.parent.mkdir()
    first.rename(moved)
    monkeypatch.chdir(tmp_path)  # a relative sqlite path must not resolve against the cwd
    store = fs.open_store(moved)
    assert store.config.registry.path == f"sqlite:///{fs.data_dir(moved) / fs.REGISTRY_FILE}"
    assert {v.name for v in store.list_feature_views()} == {
        USER_SEQUENCES, USER_ACTIVITY, USER_PACKED, ITEM_SIDE_INFO, DOMAIN_FEATURES
    }
    users = _some_users(feast_workdir, 3)
    got = online.online_features(store, users, "fashion_feed")
    want = online.online_features(feast_workdir, users, "fashion_feed")
    pd.testing.assert_frame_equal(got, want)
    assert not first.exists() and not (tmp_path / fs.DATA_DIRNAME).exists(), "no db created elsewhere"


def test_latest_rows_equal_feasts_pull(feast_workdir: Path) -> None:
    """materialize's arg_max read == Feast's pull_latest_from_table_or_query, for every view and a
    window that cuts the history."""
    from datetime import UTC, datetime

    store = fs.open_store(feast_workdir)
    provider = store._get_provider()
    cut = (datetime(2026, 9, 3, tzinfo=UTC), datetime(2026, 9, 6, tzinfo=UTC))
    windows = [(fs.EPOCH, datetime.now(UTC)), cut]
    for view in store.list_feature_views():
        src, keys = view.batch_source, [e.name for e in view.entity_columns]
        names = [f.name for f in view.features]
        for start, end in windows:
            ours = materialize.latest_rows(src.path, keys, names, src.timestamp_field, start, end)
            theirs = provider.offline_store.pull_latest_from_table_or_query(
                config=store.config, data_source=src, join_key_columns=keys, feature_name_columns=names,
                timestamp_field=src.timestamp_field, created_timestamp_column=None,
                start_date=start, end_date=end,
            ).to_arrow()
            theirs = theirs.select(ours.column_names).sort_by([(k, "ascending") for k in keys])
            assert ours.num_rows == theirs.num_rows, view.name
            assert ours.to_pylist() == theirs.to_pylist(), view.name
