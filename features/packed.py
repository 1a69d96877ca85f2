"""One user's sequences as one blob: the packed sequence view's format, encoded and decoded column-wise.

The per-field user_sequences view stores 30 list features per user (5 behaviour types x 6 fields):
30 online-store values to write at materialization and to read and convert per ranking request.
The packed view (features.feature_repo.views.USER_PACKED) holds the same lists as ONE bytes value,
little-endian int64 words:

    word 0            PACK_MAGIC (format and version)
    word 1, 2         NB = number of behaviour types, NF = fields per behaviour (contract order)
    words 3 .. 3+NB   L_b, the length of behaviour b's lists (its NF lists are aligned)
    then, for b in behaviours, for f in fields: L_b values of seq_<b>_<f>

so decoding is a np.frombuffer and slicing, and encoding a handful of vectorised scatters. Both
directions work on whole columns; the per-field view stays the system of record that other teams
read (tests check pack -> unpack is the identity and that the two views agree through Feast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features.sequences import SEQUENCE_TYPE, normalize_sequences

PACK_MAGIC = int.from_bytes(b"DACDRPK\x01", "little")  # the format's name and version 1 (high byte)
_HEAD = 3  # magic, NB, NF


class PackError(ValueError):
    """A blob that is not a packed sequence record of this contract."""


def _shape() -> tuple[int, int]:
    """(behaviour types, fields per behaviour) of the contract."""
    return len(C.BEHAVIOR_TYPES), len(C.SEQ_FIELDS)


def pack(tbl: pa.Table) -> pa.Array:
    """The packed blob (binary) of every row of a table with all seq_<behavior>_<field> columns."""
    tbl = normalize_sequences(tbl)
    nb, nf = _shape()
    n = tbl.num_rows
    lens = np.zeros((n, nb), dtype=np.int64)
    for bi, b in enumerate(C.BEHAVIOR_TYPES):
        lens[:, bi] = np.asarray(pc.list_value_length(tbl.column(C.seq_col(b, C.SEQ_FIELDS[0]))), np.int64)
        for f in C.SEQ_FIELDS[1:]:
            other = np.asarray(pc.list_value_length(tbl.column(C.seq_col(b, f))), np.int64)
            if not np.array_equal(other, lens[:, bi]):
                row = int(np.argmax(other != lens[:, bi]))
                raise C.ContractError(f"{C.seq_col(b, f)}: row {row} is not aligned with the other {b} lists")
    words = _HEAD + nb + nf * lens.sum(axis=1)
    starts = np.cumsum(words) - words
    buf = np.empty(int(words.sum()), dtype="<i8")
    buf[starts] = PACK_MAGIC
    buf[starts + 1] = nb
    buf[starts + 2] = nf
    buf[(starts[:, None] + _HEAD + np.arange(nb)).ravel()] = lens.ravel()
    before = np.cumsum(lens, axis=1) - lens  # values of earlier behaviours, per field
    for bi, b in enumerate(C.BEHAVIOR_TYPES):
        rows = np.repeat(np.arange(n), lens[:, bi])
        within = np.arange(len(rows)) - np.repeat(np.cumsum(lens[:, bi]) - lens[:, bi], lens[:, bi])
        for fi, f in enumerate(C.SEQ_FIELDS):
            base = starts + _HEAD + nb + nf * before[:, bi] + fi * lens[:, bi]
            vals = np.asarray(pc.list_flatten(tbl.column(C.seq_col(b, f))), dtype=np.int64)
            buf[base[rows] + within] = vals
    offsets = np.concatenate([[0], np.cumsum(words) * 8]).astype(np.int64)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(buf)]
    arr = pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, buffers)
    return arr.cast(pa.binary()) if offsets[-1] < 2**31 else arr


def packed_snapshots(snapshots: pa.Table) -> pa.Table:
    """The packed view's rows: user_id, snapshot_time and the packed blob of each sequence snapshot."""
    from features.feature_repo.views import PACKED_SEQUENCES

    return pa.table({
        C.USER_ID: snapshots.column(C.USER_ID),
        C.SNAPSHOT_TIME: snapshots.column(C.SNAPSHOT_TIME),
        PACKED_SEQUENCES: pack(snapshots),
    })


@dataclass(frozen=True)
class BlobLayout:
    """Where every list of a run of blobs lies in their concatenated int64 words."""

    words: np.ndarray  # the blobs' words back to back
    starts: np.ndarray  # (U,) first word of each blob (0 for a missing one)
    lens: np.ndarray  # (U, NB) list length per behaviour, contract order (0 for a missing blob)

    def positions(self, behavior: int, field_: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, index within the list, word position) of every element of one behaviour's field."""
        nb, nf = _shape()
        count = self.lens[:, behavior]
        before = self.lens[:, :behavior].sum(axis=1)
        rows = np.repeat(np.arange(len(count)), count)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
        base = self.starts + _HEAD + nb + nf * before + field_ * count
        return rows, within, base[rows] + within


def layout(blobs: Sequence[bytes | None] | pa.Array) -> BlobLayout:
    """Check and locate a run of packed blobs (None or b"" is a user with no sequences)."""
    nb, nf = _shape()
    if isinstance(blobs, (pa.Array, pa.ChunkedArray)):
        blobs = blobs.to_pylist()
    sizes = np.array([0 if b is None else len(b) for b in blobs], dtype=np.int64)
    if (sizes % 8).any():
        raise PackError(f"packed blob {int(np.argmax(sizes % 8 > 0))} is not a whole number of int64 words")
    words = np.frombuffer(b"".join(b for b in blobs if b), dtype="<i8")
    present = sizes > 0
    starts = np.where(present, (np.cumsum(sizes) - sizes) // 8, 0)
    lens = np.zeros((len(blobs), nb), dtype=np.int64)
    if present.any():
        head = words[starts[present, None] + np.arange(_HEAD)]
        if (head[:, 0] != PACK_MAGIC).any() or (head[:, 1] != nb).any() or (head[:, 2] != nf).any():
            raise PackError(f"not a packed sequence record of {nb} behaviours x {nf} fields (format 1)")
        lens[present] = words[starts[present, None] + _HEAD + np.arange(nb)]
    expected = np.where(present, _HEAD + nb + nf * lens.sum(axis=1), 0)
    if (lens < 0).any() or not np.array_equal(expected * 8, sizes):
        raise PackError("packed blob length does not match its header")
    return BlobLayout(words=words, starts=starts, lens=lens)


def unpack(blobs: Sequence[bytes | None] | pa.Array) -> pa.Table:
    """The seq_<behavior>_<field> list<int64> columns of packed blobs (None/empty -> empty lists)."""
    lay = layout(blobs)
    cols: dict[str, pa.Array] = {}
    for bi, b in enumerate(C.BEHAVIOR_TYPES):
        offsets = pa.array(np.concatenate([[0], np.cumsum(lay.lens[:, bi])]).astype(np.int32))
        for fi, f in enumerate(C.SEQ_FIELDS):
            values = pa.array(lay.words[lay.positions(bi, fi)[2]], pa.int64())
            cols[C.seq_col(b, f)] = pa.ListArray.from_arrays(offsets, values, type=SEQUENCE_TYPE)
    return pa.table(cols, schema=pa.schema([pa.field(c, SEQUENCE_TYPE, nullable=False) for c in cols]))


def unpack_padded(
    blobs: Sequence[bytes | None], behaviors: list[str], fields: list[str], max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids straight from blobs in the model's left-padded layout (newest at max_len-1):
    (len(fields), U, len(behaviors), max_len) int64, and the (U, NB, max_len) mask of real positions."""
    lay = layout(blobs)
    u = len(lay.lens)
    out = np.zeros((len(fields), u, len(behaviors), max_len), dtype=np.int64)
    mask = np.zeros((u, len(behaviors), max_len), dtype=bool)
    pick = np.array([C.SEQ_FIELDS.index(f) for f in fields], dtype=np.int64)
    for bj, b in enumerate(behaviors):
        bi = C.BEHAVIOR_TYPES.index(b)
        count = lay.lens[:, bi]
        if (count > max_len).any():
            row = int(np.argmax(count > max_len))
            raise PackError(f"user row {row} holds {int(count[row])} {b} events, more than max_len={max_len}")
        rows, within, pos = lay.positions(bi, 0)
        slot = max_len - count[rows] + within
        # field f of an element sits f * count words after its field-0 word
        out[:, rows, bj, slot] = lay.words[pos[None, :] + pick[:, None] * count[rows][None, :]]
        mask[rows, bj, slot] = True
    return out, mask
