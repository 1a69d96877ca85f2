"""Feast on Ray (`--engine ray`): the workdir's feature repo with Feast's Ray offline store and its
`ray.engine` compute engine, instead of duckdb and dacdr's column-wise writer (features.materialize).

Same registry, same views, same online store: only where Feast reads the offline parquet and
computes the latest row per entity changes. Materialization on Ray writes the values the local
path writes (tested). Feast 0.67's Ray offline store cannot serve the sequence (list) features in
get_historical_features (docs/scale-out.md has the error), so the training table keeps its own
Ray Data path (features.ray_data); scalar views work there and are tested.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.compute as pc
import pyarrow.dataset as ds

from dacdr.engine import init_ray
from features import store as fs
from features.materialize import MaterializeResult, windows

if TYPE_CHECKING:
    from feast import FeatureStore

RAY_STORAGE = "ray_offline"  # the Ray offline store's scratch folder, under the repo's data folder


def open_ray_store(workdir: Path | str) -> FeatureStore:
    """The workdir's FeatureStore with the Ray offline store and the ray.engine compute engine."""
    from feast import FeatureStore

    fs.open_store(workdir)  # the same checks (a built repo) and the same error as the local path
    init_ray()  # Feast's Ray store then reuses this connection ($RAY_ADDRESS or a bounded local Ray)
    repo = fs.repo_dir(workdir)
    config = fs.repo_config(repo)
    config.offline_config = {"type": "ray", "storage_path": str(fs.data_dir(workdir) / RAY_STORAGE)}
    config.batch_engine_config = {"type": "ray.engine"}
    return FeatureStore(repo_path=str(repo), config=config)


def _rows_in_window(path: str, keys: list[str], ts: str, start: datetime, end: datetime) -> int:
    """Distinct entities of a source file with a row in [start, end]: what one materialization writes."""
    tbl = ds.dataset(path).to_table(columns=[*keys, ts])
    t = tbl[ts]
    mask = pc.and_(pc.greater_equal(t, start), pc.less_equal(t, end))
    return tbl.filter(mask).group_by(keys).aggregate([]).num_rows


def materialize_on_ray(
    workdir: Path | str, end: datetime | None = None, views: list[str] | None = None
) -> MaterializeResult:
    """features.materialize.materialize's windows (incremental snapshots, whole dimension views), written by
    Feast's own materialization on the ray.engine compute engine, which records each interval.
    `views`: only these (as features.materialize.materialize)."""
    store = open_ray_store(workdir)
    end = (end or datetime.now(UTC)).astimezone(UTC)
    t0 = time.perf_counter()
    rows: dict[str, int] = {}
    for fv, start in windows(store, workdir, end, views):
        if start >= end:
            rows[fv.name] = 0
            continue
        source = fv.batch_source
        rows[fv.name] = _rows_in_window(source.path, [e.name for e in fv.entity_columns],
                                        source.timestamp_field, start, end)
        if rows[fv.name]:
            store.materialize(start, end, feature_views=[fv.name])
        else:  # Feast's Ray store fails on an empty window (docs/scale-out.md): record it as done
            store.registry.apply_materialization(fv, store.project, start, end)
    return MaterializeResult(rows=rows, end=end, seconds=time.perf_counter() - t0)
