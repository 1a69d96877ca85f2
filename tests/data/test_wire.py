"""Column-wise Feast wire encodings equal protobuf's and Feast's own serializers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Int64List, Value

from features.feature_repo import wire as W

EDGE_INTS = [0, 1, -1, 127, 128, 16_383, 16_384, 2**63 - 1, -(2**63), 300, -300]


def _proto(kind: str, values: list) -> list[bytes]:
    """protobuf's bytes for each value (b"" for None, as Feast writes a null)."""
    return [b"" if v is None else Value(**{kind: v}).SerializeToString() for v in values]


@pytest.mark.parametrize("seed", [0, 1])
def test_scalar_encodings_equal_protobuf(seed: int) -> None:
    """int64, double and bytes values, edge cases, nulls and random draws, byte for byte."""
    rng = np.random.default_rng(seed)
    ints = [None, *EDGE_INTS, *map(int, rng.integers(-(2**63), 2**63 - 1, 200, dtype=np.int64))]
    assert W.int64_values(pa.array(ints, pa.int64())) == _proto("int64_val", ints)
    floats = [None, 0.0, -0.0, 1.5, -2.25, 1e300, *map(float, rng.normal(size=50))]
    assert W.double_values(pa.array(floats, pa.float64())) == _proto("double_val", floats)
    blobs = [None, b"", b"abc", bytes(127), bytes(128), rng.bytes(20_000), b""]
    assert W.bytes_values(pa.array(blobs, pa.binary())) == _proto("bytes_val", blobs)


@pytest.mark.parametrize("seed", [0, 1])
def test_int64_list_encoding_equals_protobuf(seed: int) -> None:
    """Lists: null, empty, negatives (10-byte varints), long lists, sliced arrays."""
    rng = np.random.default_rng(seed)
    lists = [None, [], [1], [-1, 5, 0], EDGE_INTS, [2**63 - 1] * 50, []]
    lists += [list(map(int, rng.integers(-(2**40), 2**40, rng.integers(0, 300)))) for _ in range(40)]
    arr = pa.array(lists, pa.list_(pa.int64()))
    want = [b"" if v is None else Value(int64_list_val=Int64List(val=v)).SerializeToString() for v in lists]
    assert W.int64_list_values(arr) == want
    assert W.int64_list_values(arr.slice(3, 10)) == want[3:13]


def test_entity_keys_equal_feasts_serializer() -> None:
    """int64 join keys column-wise == serialize_entity_key; strings go through Feast itself."""
    ids = np.array(EDGE_INTS, dtype=np.int64)
    want = [
        serialize_entity_key(EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=int(i))]), 3)
        for i in ids
    ]
    assert W.entity_keys(pa.array(ids), "user_id", "Int64", 3) == want
    names = ["fashion_feed", "é"]
    assert W.entity_keys(pa.array(names), "domain", "String", 3) == [
        serialize_entity_key(EntityKey(join_keys=["domain"], entity_values=[Value(string_val=s)]), 3)
        for s in names
    ]
    with pytest.raises(TypeError, match="no wire encoding"):
        W.value_column(pa.array([1.0], pa.float32()), "Float32")
