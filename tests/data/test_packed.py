"""The packed sequence view: pack/unpack are inverse, bad blobs are named, Feast serves per-field values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import contract as C
from features import online
from features import store as fs
from features.feature_repo.sources import USER_PACKED_FILE, USER_SEQUENCES_FILE
from features.feature_repo.views import PACKED_SEQUENCES
from features.packed import PackError, pack, unpack, unpack_padded
from features.sequences import empty_sequences, sequence_columns


def _snapshots(workdir: Path) -> pa.Table:
    """The store's sequence snapshots (user_id, snapshot_time, seq_* columns)."""
    return pq.read_table(fs.data_dir(workdir) / USER_SEQUENCES_FILE)


def test_pack_then_unpack_is_the_identity(feast_workdir: Path) -> None:
    """Every snapshot row of the tiny store, plus users with no sequences at all, round-trip exactly."""
    snaps = _snapshots(feast_workdir)
    schema = empty_sequences(0).schema
    seqs = pa.concat_tables([snaps.select(sequence_columns()).cast(schema), empty_sequences(2)])
    blobs = pack(seqs)
    assert unpack(blobs).to_pylist() == seqs.to_pylist()
    assert unpack([None, b""]).to_pylist() == empty_sequences(2).to_pylist()
    built = pq.read_table(fs.data_dir(feast_workdir) / USER_PACKED_FILE)  # what build() wrote
    assert built.column(PACKED_SEQUENCES).to_pylist() == blobs.to_pylist()[: snaps.num_rows]


def test_unpack_padded_is_the_left_padded_layout(feast_workdir: Path) -> None:
    """unpack_padded puts each list's newest element at max_len-1, like FeatureSpec.pad_sequences."""
    snaps = _snapshots(feast_workdir).slice(0, 300)
    behaviors, fields, max_len = ["click", "browse"], [C.ITEM_ID, C.VALUE], 50
    raw, mask = unpack_padded(pack(snaps).to_pylist(), behaviors, fields, max_len)
    assert raw.shape == (2, 300, 2, max_len) and mask.shape == (300, 2, max_len)
    for fi, f in enumerate(fields):
        for bj, b in enumerate(behaviors):
            for row, lst in enumerate(snaps.column(C.seq_col(b, f)).to_pylist()):
                assert raw[fi, row, bj, max_len - len(lst):].tolist() == lst
                assert mask[row, bj].sum() == len(lst) and not raw[fi, row, bj, : max_len - len(lst)].any()
    with pytest.raises(PackError, match="more than max_len=1"):
        unpack_padded(pack(snaps).to_pylist(), behaviors, fields, 1)


def test_bad_blobs_and_misaligned_lists_are_named(feast_workdir: Path) -> None:
    """A blob of another format, a truncated one and lists of unequal length are errors, not garbage."""
    good = pack(_snapshots(feast_workdir).slice(0, 3)).to_pylist()
    with pytest.raises(PackError, match="whole number"):
        unpack([good[0][:-3]])
    with pytest.raises(PackError, match="does not match its header"):
        unpack([good[0][:-8]])
    with pytest.raises(PackError, match="not a packed sequence record"):
        unpack([np.arange(8, dtype="<i8").tobytes()])
    seqs = empty_sequences(1)
    bad = seqs.set_column(0, seqs.field(0), pa.array([[1, 2]], pa.list_(pa.int64())))
    with pytest.raises(C.ContractError, match="not aligned"):
        pack(bad)


def test_feast_serves_the_packed_view_like_the_per_field_view(feast_workdir: Path) -> None:
    """Online, through Feast: each user's packed blob unpacks to its per-field online features."""
    users = [int(u) for u in np.unique(_snapshots(feast_workdir).column(C.USER_ID))[::5][:25]] + [10**12]
    per_field = online.online_features(feast_workdir, users, "fashion_feed")
    got = unpack(online.packed_sequences(feast_workdir, users))
    for col in sequence_columns():
        assert got.column(col).to_pylist() == [list(x) for x in per_field[col]], col
    assert got.column(sequence_columns()[0]).to_pylist()[-1] == []
