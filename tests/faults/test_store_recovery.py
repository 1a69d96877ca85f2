"""Store faults without a server: a journal left by a killed writer, a store that lost its rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.faults.conftest import copy_store, leave_hot_journal, online_db, packed_rows


def test_hot_journal_does_not_block_the_readonly_check(serving_feast: Path, tmp_path: Path) -> None:
    """A writer killed mid-transaction leaves a hot journal: the start-up check rolls it back
    (the store reads as before the transaction) instead of calling the store unreadable."""
    from features.store import check_online_store

    feast = copy_store(serving_feast, tmp_path / "feast")
    db = online_db(feast)
    before = db.read_bytes()
    journal = leave_hot_journal(db)
    assert db.read_bytes() != before, "the writer should have spilled dirty pages into the file"
    assert check_online_store(feast) == db
    assert not journal.exists()
    assert db.read_bytes()[100:] == before[100:]  # the header's change counter may differ


def test_materialize_reloads_every_user_after_the_store_lost_its_rows(
    serving_feast: Path, tmp_path: Path
) -> None:
    """The documented recovery of a lost store: `features apply` + `materialize` loads every user
    again, although the registry says the snapshot views were materialized up to a later time."""
    from features import materialize
    from features import store as fs

    feast = copy_store(serving_feast, tmp_path / "feast")
    db = online_db(feast)
    users = pq.read_table(fs.data_dir(feast) / "user_packed.parquet", columns=["user_id"]).column(0)
    expected = len(set(users.to_pylist()))
    assert packed_rows(db) == expected
    db.unlink()
    fs.apply(feast)  # the store file comes back with empty tables
    assert packed_rows(db) == 0
    result = materialize.materialize(feast)
    assert result.rows["user_packed"] == expected
    assert packed_rows(db) == expected
    # a second run resumes as before: nothing was lost, nothing is reloaded
    again = materialize.materialize(feast)
    assert again.rows["user_packed"] == 0


def first_domain(feast: Path) -> str:
    """A domain of the store's domains table."""
    from features import contract as C
    from features import store as fs
    from features.feature_repo.sources import DOMAINS_FILE

    return str(pq.read_table(fs.data_dir(feast) / DOMAINS_FILE, columns=[C.DOMAIN]).column(0)[0])


def drop_domain_rows(db: Path) -> None:
    """Delete every row of the domain view from a SQLite online store (a store that lost them)."""
    import sqlite3

    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM dacdr_domain_features")
    conn.close()


def test_a_missing_domain_row_is_read_again_once_reloaded(
    serving_feast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request needs the domain row, memoised for a minute: one read while the store was
    empty (Redis restarted, the row not reloaded yet) must not be kept, or every answer for a
    minute after the recovery is scored without the domain's features (measured by
    benchmarks/soak.py: warm answers, /readyz 200, scores off by ~1e-3)."""
    from features import materialize, online
    from features import store as fs
    from features.feature_repo.views import DOMAIN_FEATURES

    feast = copy_store(serving_feast, tmp_path / "feast")
    store, domain = fs.open_store(feast), first_domain(feast)
    good = online.domain_values(store, domain)
    assert any(v is not None for v in good.values())
    drop_domain_rows(online_db(feast))
    monkeypatch.setattr(online, "_OBJECT_TTL_S", -1.0)  # the minute ran out while the row was gone
    assert all(v is None for v in online.domain_values(store, domain).values())
    monkeypatch.setattr(online, "_OBJECT_TTL_S", 60.0)
    materialize.materialize(feast, views=[DOMAIN_FEATURES])  # the recovery reloads it
    assert online.domain_values(store, domain) == good


def test_a_replaced_store_file_forgets_the_memoised_domain_row(serving_feast: Path, tmp_path: Path) -> None:
    """`rm online_store.db; cp other.db online_store.db`: the next read takes the domain row of
    the new file, not the one memoised from the old file for up to a minute."""
    import shutil

    from bento.store_watch import StoreWatch
    from features import online
    from features import store as fs
    from features.feature_repo.views import USER_PACKED

    feast = copy_store(serving_feast, tmp_path / "feast")
    db, other = online_db(feast), tmp_path / "other.db"
    shutil.copy2(db, other)
    drop_domain_rows(other)  # the replacement differs in its domain row
    store, domain = fs.open_store(feast), first_domain(feast)
    watch = StoreWatch.open(store, feast, USER_PACKED)
    assert any(v is not None for v in online.domain_values(store, domain).values())
    db.unlink()
    shutil.copy2(other, db)
    with watch.lock:
        watch.check()  # what every request does before it reads
    assert all(v is None for v in online.domain_values(store, domain).values())


def test_materialize_loads_the_packed_view_last(serving_feast: Path) -> None:
    """Readiness samples the packed view's users: once they are back, everything a request reads
    (item side info, the domain row) must be back too, so the packed view is loaded last."""
    from datetime import UTC, datetime

    from features import store as fs
    from features.feature_repo.views import DOMAIN_FEATURES, ITEM_SIDE_INFO, USER_PACKED
    from features.materialize import windows

    names = [fv.name for fv, _ in windows(fs.open_store(serving_feast), serving_feast, datetime.now(UTC))]
    assert names[-1] == USER_PACKED, names
    assert {ITEM_SIDE_INFO, DOMAIN_FEATURES} == set(names[:2]), names
