"""The served-ranking log and the click log, and their join into contract impressions.

The service writes one row per returned item to `<served_log_dir>/served/dt=YYYY-MM-DD/part-*.parquet`
(SERVED_SCHEMA); clicks (and the purchases that follow them) are one row per clicked item
(CLICKS_SCHEMA), keyed like impressions by (request_id, item_id). `join_clicks` gives every shown
served row its label and purchase value; `impressions_of` projects that onto the log contract, so
the next day's training data is what was served. Shadow arms are scored and logged but never shown:
their rows are dropped before the join (their clicks would be someone else's).

Arm assignment is part of the serving contract and lives here so the service, the simulator and
the report agree on it: u = int(sha256(f"{salt}:{user_id}")[:16 hex], 16) / 2**64, the first live
arm whose cumulative share exceeds u.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import contract as C

SERVED = "served"
CLICKS = "clicks"
POSITION, SCORE, MODEL_TAG, ARM, EXPERIMENT_ID = "position", "score", "model_tag", "arm", "experiment_id"
PROPENSITY, EXPLORE, PURCHASE_VALUE = "propensity", "explore", "purchase_value"
SERVED_SCHEMA = pa.schema(
    [
        pa.field(C.REQUEST_ID, pa.string(), nullable=False),
        pa.field(C.EVENT_TIME, C.TIMESTAMP, nullable=False),
        pa.field(C.DOMAIN, pa.string(), nullable=False),
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(POSITION, pa.int32(), nullable=False),  # 1-based
        pa.field(SCORE, pa.float64(), nullable=False),
        pa.field(MODEL_TAG, pa.string(), nullable=False),
        pa.field(ARM, pa.string(), nullable=False),
        pa.field(EXPERIMENT_ID, pa.string()),
        pa.field(PROPENSITY, pa.float64()),
        pa.field(EXPLORE, pa.bool_()),
    ]
)
CLICKS_SCHEMA = pa.schema(
    [
        pa.field(C.REQUEST_ID, pa.string(), nullable=False),
        pa.field(C.EVENT_TIME, C.TIMESTAMP, nullable=False),  # when the click happened
        pa.field(C.DOMAIN, pa.string(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(PURCHASE_VALUE, pa.float64(), nullable=False),  # amount paid after the click (0: none)
    ]
)
_KEY = [C.REQUEST_ID, C.ITEM_ID, C.DOMAIN]


def _read_dir(root: Path | str, table: str, schema: pa.Schema, days: Sequence[str] | None) -> pa.Table:
    """Every parquet file of `<root>/<table>/dt=*/` (optionally some days), cast to `schema`."""
    parts = [p for p in C.list_partitions(root, table) if p.path.suffix == ".parquet" and p.dt]
    parts = [p for p in parts if days is None or p.dt in days]
    if not parts:
        return schema.empty_table()
    tables = [pq.read_table(p.path).select(schema.names).cast(schema) for p in parts]
    return pa.concat_tables(tables)


def read_served(root: Path | str, days: Sequence[str] | None = None) -> pa.Table:
    """The served log under `root` (`served/dt=*/part-*.parquet`), optionally some days only."""
    return _read_dir(root, SERVED, SERVED_SCHEMA, days)


def read_clicks(root: Path | str, days: Sequence[str] | None = None) -> pa.Table:
    """The click log under `root` (`clicks/dt=*/part-*.parquet`), optionally some days only."""
    return _read_dir(root, CLICKS, CLICKS_SCHEMA, days)


def join_clicks(served: pa.Table, clicks: pa.Table, shadow_arms: Sequence[str] = ()) -> pa.Table:
    """Shown served rows with `label` (1.0 clicked) and `purchase_value`; shadow arms' rows dropped.

    A click without a served row (a stale page, a bot) is not an impression and is ignored; a served
    row repeated by a retried write counts once.
    """
    served = served.cast(SERVED_SCHEMA)
    if shadow_arms:
        shadow = pc.is_in(served.column(ARM), pa.array(list(shadow_arms), pa.string()))
        served = served.filter(pc.invert(shadow))
    served = _first_per_key(served)
    clicked = clicks.cast(CLICKS_SCHEMA).group_by(_KEY).aggregate([(PURCHASE_VALUE, "sum")])
    clicked = clicked.rename_columns([*_KEY, PURCHASE_VALUE]).append_column(
        C.LABEL, pa.array(np.ones(clicked.num_rows))
    )
    out = served.join(clicked, _KEY, join_type="left outer")
    label = pc.fill_null(out.column(C.LABEL), 0.0)
    value = pc.fill_null(out.column(PURCHASE_VALUE), 0.0)
    out = out.set_column(out.schema.get_field_index(C.LABEL), C.LABEL, label)
    out = out.set_column(out.schema.get_field_index(PURCHASE_VALUE), PURCHASE_VALUE, value)
    order = pc.sort_indices(out, [(C.REQUEST_ID, "ascending"), (POSITION, "ascending")])
    return out.take(order)


def _first_per_key(served: pa.Table) -> pa.Table:
    """One row per (request_id, item_id, domain): the first written (a retried write adds copies)."""
    idx = pa.array(np.arange(served.num_rows))
    first = served.append_column("_row", idx).group_by(_KEY).aggregate([("_row", "min")])
    keep = np.sort(first.column("_row_min").to_numpy())
    return served.take(pa.array(keep))


def impressions_of(joined: pa.Table) -> pa.Table:
    """Contract impressions (features/contract.py) of `join_clicks`' output."""
    return joined.select(list(C.SCHEMAS[C.IMPRESSIONS].names)).cast(C.SCHEMAS[C.IMPRESSIONS])


def arm_position(salt: str, user_ids: np.ndarray) -> np.ndarray:
    """Each user's point u in [0, 1) of the experiment's hash (sha256 of "salt:user_id", 64 bits)."""
    users, inverse = np.unique(np.asarray(user_ids, dtype=np.int64), return_inverse=True)
    # one hash per distinct user: hashlib has no vector form, and users repeat across requests
    digests = [hashlib.sha256(f"{salt}:{int(x)}".encode()).hexdigest()[:16] for x in users]
    u = np.array([int(d, 16) for d in digests], dtype=np.uint64)
    # float64 rounds the top few 64-bit values up to 1.0: keep every point inside [0, 1)
    return np.minimum(u.astype(np.float64) / 2.0**64, np.nextafter(1.0, 0.0))[inverse]


def assign_arms(salt: str, shares: Sequence[float], user_ids: np.ndarray) -> np.ndarray:
    """Index of each user's live arm: the first whose cumulative share exceeds the user's hash point.

    Shares should sum to 1; users beyond the total (when they sum to less) get -1 (no arm).
    """
    cum = np.cumsum(np.asarray(shares, dtype=np.float64))
    idx = np.searchsorted(cum, arm_position(salt, user_ids), side="right")
    return np.where(idx < len(cum), idx, -1)
