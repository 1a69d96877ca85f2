"""Feast on Ray (features.store_ray): a store built and materialized with `--engine ray` serves the
values the local (duckdb) store serves; the Ray offline store's point-in-time join equals duckdb's on
the scalar views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from dacdr.cli import app
from features import contract as C
from features import io, online
from features import store as fs


def test_store_on_ray_serves_what_the_local_store_serves(
    ray_session: str, tiny_logs: Path, feast_workdir: Path, tmp_path: Path
) -> None:
    """`features build|apply|materialize --engine ray` (snapshots on Ray Data, materialization by Feast's
    ray.engine) gives every user, domain and item the local store's online values; get_historical_features
    through the Ray offline store equals duckdb's for the activity view."""
    from features.feature_repo.views import USER_ACTIVITY, USER_SEQUENCES
    from features.store_ray import materialize_on_ray, open_ray_store

    workdir = tmp_path / "store"
    for args in (
        ["features", "build", "--logs", str(tiny_logs), "--workdir", str(workdir), "--engine", "ray"],
        ["features", "apply", "--workdir", str(workdir)],
        ["features", "materialize", "--workdir", str(workdir), "--engine", "ray"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    users = io.read_table(tiny_logs, C.BEHAVIORS)[C.USER_ID].unique().to_pylist()[:200]
    for domain in io.read_table(tiny_logs, C.DOMAINS)[C.DOMAIN].to_pylist():
        local = online.online_features(feast_workdir, users, domain)
        assert online.online_features(workdir, users, domain).equals(local)
        assert sum(len(v) for v in local["seq_click_item_id"]) > 0  # sequences, not only empty lists
    items = io.read_table(tiny_logs, C.ITEMS)[C.ITEM_ID].to_pylist()
    assert online.item_features(workdir, items).equals(online.item_features(feast_workdir, items))
    # a later window holds no new snapshot: recorded as done, not an error from Feast's Ray store
    again = materialize_on_ray(workdir, datetime.now(UTC) + timedelta(days=1))
    assert again.rows[USER_SEQUENCES] == again.rows[USER_ACTIVITY] == 0

    imps = io.read_table(tiny_logs, C.IMPRESSIONS).to_pandas().sample(300, random_state=0)
    entity = pd.DataFrame({C.USER_ID: imps[C.USER_ID], "event_timestamp": imps[C.EVENT_TIME].dt.floor("D")})
    entity = entity.drop_duplicates(ignore_index=True)
    view = fs.open_store(feast_workdir).get_feature_view(USER_ACTIVITY)
    refs = [f"{USER_ACTIVITY}:{f.name}" for f in view.features]
    keys = [C.USER_ID, "event_timestamp"]
    got = {}
    for name, store in (("duckdb", fs.open_store(feast_workdir)), ("ray", open_ray_store(workdir))):
        frame = store.get_historical_features(entity_df=entity, features=refs).to_df()
        got[name] = frame.sort_values(keys, ignore_index=True)[[*keys, *(f.name for f in view.features)]]
    assert got["duckdb"]["n_click"].notna().sum() > 0
    pd.testing.assert_frame_equal(got["ray"], got["duckdb"], check_dtype=False)
