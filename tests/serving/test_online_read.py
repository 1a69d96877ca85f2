"""The service's arrow-native online read returns what features.online.online_features returns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa


def test_service_read_equals_store_online_features(serving_feast: Path, serving_domain: str) -> None:
    """Known and unknown users: every user, sequence and domain-feature value is identical."""
    import pyarrow.parquet as pq

    from bento.ranker import read_user_features
    from features import contract as C
    from features import online
    from features import store as fs
    from features.feature_repo.services import DACDR_V1
    from features.feature_repo.sources import USER_SEQUENCES_FILE

    store = fs.open_store(serving_feast)
    users = pq.read_table(fs.data_dir(serving_feast) / USER_SEQUENCES_FILE, columns=[C.USER_ID]).column(0)
    ids = [int(u) for u in users.unique().to_pylist()[:20]] + [10**12 + 3]
    got = read_user_features(store, store.get_feature_service(DACDR_V1), ids, serving_domain)
    want = pa.Table.from_pandas(online.online_features(store, ids, serving_domain), preserve_index=False)
    compared = [
        c for c in want.column_names if c.startswith(("seq_", C.DOMAIN_FEATURE_PREFIX)) or c == C.USER_ID
    ]
    assert len(compared) > 25
    for name in compared:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    lengths = [len(x) for x in got.column(C.seq_col("click", C.ITEM_ID)).to_pylist()]
    assert lengths[-1] == 0 and max(lengths) > 0  # the unknown user is empty, not null; others are not


def test_packed_read_tensors_equal_the_frame_path(
    serving_feast: Path, serving_domain: str, tiny_run: Path
) -> None:
    """The server's DACDR read (packed view -> tensors, no frame) gives the user half exactly what
    tensorizing the per-field service read gives, for known, unknown and repeated users."""
    import numpy as np
    import pyarrow.parquet as pq

    from bento.ranker import read_user_features
    from features import contract as C
    from features import online
    from features import store as fs
    from features.feature_repo.services import DACDR_V1
    from features.feature_repo.sources import USER_SEQUENCES_FILE
    from models.checkpoint import load_checkpoint

    _, spec, _ = load_checkpoint(tiny_run / "checkpoint.pt", "cpu")
    store = fs.open_store(serving_feast)
    users = pq.read_table(fs.data_dir(serving_feast) / USER_SEQUENCES_FILE, columns=[C.USER_ID]).column(0)
    ids = [int(u) for u in users.unique().to_pylist()[::7][:30]] + [10**12 + 3]
    ids.append(ids[0])
    domain = spec.domain_batch(serving_domain, online.domain_values(store, serving_domain))
    got = spec.tensorize_users(online.packed_sequences(store, ids), domain)
    rows = read_user_features(store, store.get_feature_service(DACDR_V1), ids, serving_domain)
    rows = rows.append_column(C.ITEM_ID, pa.array(np.zeros(len(ids), dtype=np.int64)))
    for c in C.SIDE_INFO:
        rows = rows.append_column(c, pa.array(np.full(len(ids), -1, dtype=np.int64)))
    want = spec.tensorize(rows)
    assert set(got) == {k for k in want if k.startswith("seq_")} | {"domain", "domain_feats", "task"}
    for key, value in got.items():
        assert value.dtype == want[key].dtype and value.equal(want[key]), key
    assert int((got["seq_item"] != 0).sum()) > 0 and not bool((got["seq_item"][-2] != 0).any())


def test_query_users_keep_first_seen_order() -> None:
    """The distinct users of a batch in first-seen order, and each query's row among them."""
    from bento.ranker import Query, Ranker

    queries = [Query.of(u, [1]) for u in (5, 3, 5, 7, 3, 10**12)]
    users, rows = Ranker.query_users(queries)
    assert users.tolist() == [5, 3, 7, 10**12] and rows.tolist() == [0, 1, 0, 2, 1, 3]
