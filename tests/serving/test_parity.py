"""Training/serving skew: the service's scores equal the offline model's on the Feast-built row."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.serving.conftest import Served

# later than every snapshot of tiny, so the point-in-time (offline) read sees the same snapshot
# the online store serves
EVENT_TIME = "2027-01-01T12:00:00+00:00"
COLD_USER = 987_654_321_013


def _known_user_and_items(served: Served) -> tuple[int, list[int]]:
    """A user with history in the store, and 30 catalogue items plus two the catalogue lacks."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features import contract as C
    from features.feature_repo.sources import ITEMS_FILE, USER_SEQUENCES_FILE
    from features.store import data_dir

    seqs = pq.read_table(data_dir(served.feast) / USER_SEQUENCES_FILE)
    total = None
    for b in C.BEHAVIOR_TYPES:
        n = pc.list_value_length(seqs.column(C.seq_col(b, C.ITEM_ID))).fill_null(0)
        total = n if total is None else pc.add(total, n)
    users = seqs.filter(pc.greater(total, 3)).column(C.USER_ID).to_pylist()
    items = pq.read_table(data_dir(served.feast) / ITEMS_FILE).column(C.ITEM_ID).to_pylist()
    return int(users[len(users) // 2]), [int(i) for i in items[::7][:30]] + [10**12 + 1, 10**12 + 2]


@pytest.mark.parametrize("cold", [False, True], ids=["known_user", "cold_user"])
def test_http_scores_equal_offline_scores(served: Served, cold: bool) -> None:
    """Same user, items and time: HTTP /rank == predict() on the offline (historical) Feast row."""
    from features import contract as C
    from features.offline import historical_features
    from models.checkpoint import load_checkpoint
    from models.predict import predict

    user, items = _known_user_and_items(served)
    if cold:
        user = COLD_USER
    resp = httpx.post(
        f"{served.url}/rank", json={"user_id": user, "item_ids": items, "event_time": EVENT_TIME}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    online = {r["item_id"]: r["score"] for r in resp.json()["ranked"]}

    rows = pd.DataFrame(
        {
            C.USER_ID: np.full(len(items), user, dtype=np.int64),
            C.DOMAIN: served.domain,
            C.ITEM_ID: np.asarray(items, dtype=np.int64),
            C.EVENT_TIME: pd.Timestamp(EVENT_TIME),
        }
    )
    offline_rows = historical_features(served.feast, rows)
    # as arrow without pandas metadata (its ArrowDtype names do not survive a round trip), the
    # form the training table has on disk
    table = pa.Table.from_pandas(offline_rows, preserve_index=False).replace_schema_metadata(None)
    model, spec, _ = load_checkpoint(served.run / "checkpoint.pt", "cpu")
    offline = predict(model, spec, table, device="cpu")

    got = np.array([online[i] for i in items])
    np.testing.assert_allclose(got, offline, rtol=1e-5, atol=1e-7)
    assert np.unique(np.round(offline, 9)).size > 1, "degenerate check: every offline score is identical"
