"""Store faults without a server: a journal left by a killed writer, a store that lost its rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

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
