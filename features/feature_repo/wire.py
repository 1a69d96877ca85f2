"""Feast's online-store wire format, built column-wise with numpy: entity keys and serialized ValueProtos.

An online store keeps, per (entity key, feature), the bytes of a feast.types.Value proto. Feast
builds them one Python proto object at a time (~30 objects per user for the sequence view), which
is most of materialization's time. This module builds the same bytes for a whole arrow column at
once: protobuf's wire format for the few types dacdr's views use is small enough to write down:

    Value{bytes_val = b}        0x0A  varint(len(b))  b                 (field 1, length-delimited)
    Value{int64_val = v}        0x20  varint(uint64(v))                 (field 4, varint)
    Value{double_val = x}       0x29  8 bytes little-endian             (field 5, fixed64)
    Value{int64_list_val = l}   0x72  varint(len(m))  m                 (field 14, length-delimited)
        m = Int64List{val = l}: 0x0A varint(len(p)) p, p = the packed varints of l (m = b"" if l empty)
    null                        b""                                     (an empty Value, as Feast writes)

A oneof member is written even when it holds 0 (oneof fields have presence). Strings go through
protobuf itself (dimension views only). tests/data/test_wire.py checks every type against
SerializeToString and against Feast's own serialize_entity_key, including negatives and empties.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TAG_BYTES, TAG_INT64, TAG_DOUBLE, TAG_INT64_LIST, TAG_LIST_VAL = 0x0A, 0x20, 0x29, 0x72, 0x0A
_MAX_VARINT = 10  # an int64 varint takes at most 10 bytes (negatives always take 10)


def varint_sizes(u: np.ndarray) -> np.ndarray:
    """Bytes each uint64 takes as a protobuf varint (1-10)."""
    u = u.astype(np.uint64, copy=False)
    size = np.ones(len(u), dtype=np.int64)
    for j in range(1, _MAX_VARINT):
        size += u >= np.uint64(1 << (7 * j))
    return size


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of int64/uint64 values (two's complement for negatives): (flat bytes, sizes)."""
    u = values.astype(np.int64, copy=False).view(np.uint64)
    size = varint_sizes(u)
    out = np.empty((len(u), _MAX_VARINT), dtype=np.uint8)
    for j in range(_MAX_VARINT):  # byte j: bits 7j..7j+6, continuation bit unless it is the last byte
        out[:, j] = ((u >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8) | np.uint8(0x80)
    out[np.arange(len(u)), size - 1] &= np.uint8(0x7F)
    return out[np.arange(_MAX_VARINT) < size[:, None]], size


def _starts(lens: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums: where each row's piece starts in the flat buffer."""
    return np.cumsum(lens) - lens


def scatter(flat: np.ndarray, lens: np.ndarray, out: np.ndarray, dest_starts: np.ndarray) -> None:
    """Copy ragged rows (flat bytes, lens) into `out`, row i starting at dest_starts[i]."""
    within = np.arange(len(flat)) - np.repeat(_starts(lens), lens)
    out[np.repeat(dest_starts, lens) + within] = flat


def frame(
    tag: int, payload: np.ndarray, lens: np.ndarray, omit_empty: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Length-delimited field `tag` around each row's payload: tag varint(len) payload, per row.

    `payload` holds the rows back to back, in order; the heads are inserted in one pass (np.insert).
    omit_empty: a row with an empty payload becomes b"" (proto3 writes no empty packed field).
    """
    lens = lens.astype(np.int64, copy=False)
    head_bytes, head_sizes = varints(lens)
    keep = (lens > 0) if omit_empty else np.ones(len(lens), dtype=bool)
    head_lens = np.where(keep, 1 + head_sizes, 0)
    heads = np.empty(int(head_lens.sum()), dtype=np.uint8)
    head_starts = _starts(head_lens)
    heads[head_starts[keep]] = tag
    scatter(head_bytes[np.repeat(keep, head_sizes)], head_sizes[keep], heads, head_starts[keep] + 1)
    out = np.insert(payload, np.repeat(_starts(lens), head_lens), heads)
    return out, head_lens + lens


def to_bytes_list(flat: np.ndarray, lens: np.ndarray) -> list[bytes]:
    """Ragged bytes as one Python bytes object per row (through arrow's C-level to_pylist)."""
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    arr = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(lens), [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(flat))]
    )
    return arr.to_pylist()


def _valid(col: pa.Array) -> np.ndarray:
    """True where the column is not null."""
    return np.asarray(pc.is_valid(col), dtype=bool)


def _null_to_empty(flat: np.ndarray, lens: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the bytes of null rows: Feast writes an empty Value for a null."""
    if valid.all():
        return flat, lens
    return flat[np.repeat(valid, lens)], np.where(valid, lens, 0)


def int64_values(col: pa.Array) -> list[bytes]:
    """Serialized Value{int64_val} per row (b"" for nulls)."""
    vals = np.asarray(col.fill_null(0), dtype=np.int64)
    body, sizes = varints(vals)
    out_lens = 1 + sizes
    out = np.empty(int(out_lens.sum()), dtype=np.uint8)
    starts = _starts(out_lens)
    out[starts] = TAG_INT64
    scatter(body, sizes, out, starts + 1)
    return to_bytes_list(*_null_to_empty(out, out_lens, _valid(col)))


def double_values(col: pa.Array) -> list[bytes]:
    """Serialized Value{double_val} per row (b"" for nulls)."""
    vals = np.asarray(col.fill_null(0.0), dtype="<f8")
    out = np.empty((len(vals), 9), dtype=np.uint8)
    out[:, 0] = TAG_DOUBLE
    out[:, 1:] = vals.view(np.uint8).reshape(-1, 8)
    return to_bytes_list(*_null_to_empty(out.ravel(), np.full(len(vals), 9), _valid(col)))


def bytes_values(col: pa.Array) -> list[bytes]:
    """Serialized Value{bytes_val} per row (b"" for nulls)."""
    col = col.cast(pa.large_binary())
    valid = _valid(col)
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int64)[col.offset : col.offset + len(col) + 1]
    raw = col.buffers()[2]
    data = np.frombuffer(raw, dtype=np.uint8) if raw is not None else np.empty(0, np.uint8)
    lens = np.diff(offsets)
    flat, out_lens = frame(TAG_BYTES, data[offsets[0] : offsets[-1]], lens)
    return to_bytes_list(*_null_to_empty(flat, out_lens, valid))


def int64_list_values(col: pa.Array) -> list[bytes]:
    """Serialized Value{int64_list_val} per row (b"" for nulls; an empty list is 0x72 0x00)."""
    col = col.cast(pa.list_(pa.int64()))
    valid = _valid(col)
    lens = np.asarray(pc.fill_null(pc.list_value_length(col), 0), dtype=np.int64)
    body, sizes = varints(np.asarray(pc.list_flatten(col), dtype=np.int64))
    row_bytes = np.bincount(np.repeat(np.arange(len(lens)), lens), weights=sizes, minlength=len(lens))
    packed, packed_lens = frame(TAG_LIST_VAL, body, row_bytes.astype(np.int64), omit_empty=True)
    flat, out_lens = frame(TAG_INT64_LIST, packed, packed_lens)
    return to_bytes_list(*_null_to_empty(flat, out_lens, valid))


def entity_keys_int64(values: np.ndarray, key_name: str, version: int) -> list[bytes]:
    """Feast's serialize_entity_key for one int64 join key, for every value at once.

    The key is a fixed prefix (key count, name, value type, value length) then the 8 value bytes;
    the prefix is taken from Feast's own serializer (a test checks whole keys against it).
    """
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    probe = 0x0102030405060708
    sample = serialize_entity_key(
        EntityKeyProto(join_keys=[key_name], entity_values=[ValueProto(int64_val=probe)]),
        entity_key_serialization_version=version,
    )
    tail = np.array([probe], dtype="<i8").tobytes()
    if not sample.endswith(tail):
        raise RuntimeError(f"unexpected Feast entity-key layout (version {version}); use Feast's serializer")
    prefix = np.frombuffer(sample[: -len(tail)], dtype=np.uint8)
    out = np.empty((len(values), len(prefix) + 8), dtype=np.uint8)
    out[:, : len(prefix)] = prefix
    out[:, len(prefix) :] = np.asarray(values, dtype="<i8").view(np.uint8).reshape(-1, 8)
    return to_bytes_list(out.ravel(), np.full(len(values), out.shape[1]))


def value_column(col: pa.Array, dtype: str) -> list[bytes]:
    """Serialized Values of one arrow column whose Feast dtype is `dtype` (str of the Feast type)."""
    if dtype == "Array(Int64)":
        return int64_list_values(col)
    if dtype == "Int64":
        return int64_values(col)
    if dtype == "Float64":
        return double_values(col)
    if dtype == "Bytes":
        return bytes_values(col)
    if dtype == "String":  # dimension views only (a few rows): protobuf itself
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        return [b"" if v is None else ValueProto(string_val=v).SerializeToString() for v in col.to_pylist()]
    raise TypeError(f"no wire encoding for Feast type {dtype}")


def value_texts(col: pa.Array, dtype: str) -> list[str | None] | None:
    """The value_text Feast's SQL stores keep beside each value (str of a scalar; None otherwise)."""
    if dtype == "String":
        return col.to_pylist()
    if dtype in ("Int64", "Float64"):
        return [None if v is None else str(v) for v in col.to_pylist()]
    return None


def entity_keys(col: pa.Array, key_name: str, dtype: str, version: int) -> list[bytes]:
    """Feast's serialized entity keys of one join-key column (int64 column-wise, others per row)."""
    if dtype == "Int64" and col.null_count == 0:
        return entity_keys_int64(np.asarray(col, dtype=np.int64), key_name, version)
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    kind = {"Int64": "int64_val", "String": "string_val"}[dtype]
    return [
        serialize_entity_key(
            EntityKeyProto(join_keys=[key_name], entity_values=[ValueProto(**{kind: v})]),
            entity_key_serialization_version=version,
        )
        for v in col.to_pylist()
    ]
