"""`features`: sequence snapshots from the curated zone, `feast apply`, incremental materialization."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, task

from dacdr.engine import LOCAL, RAY
from features import contract as C
from flows.common import Layout, retry_transient
from flows.run_logs import configure_run_logs


@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def build_task(curated: str, feast: str, max_len: int, engine: str = LOCAL) -> None:
    """Compute the snapshot parquet files Feast reads (replaces them: idempotent)."""
    from features.store import build

    build(Path(curated), Path(feast), max_len=max_len, engine=engine)


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=retry_transient)
def apply_task(feast: str) -> None:
    """`feast apply` the repo definitions into the workdir's registry."""
    from features.store import apply

    apply(Path(feast))


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=retry_transient)
def materialize_task(feast: str, end: str | None, engine: str = LOCAL) -> dict[str, int]:
    """Incrementally materialize the offline store into the online store up to `end` (default now)."""
    from features.materialize import materialize
    from features.store_ray import materialize_on_ray

    when = None if end is None else datetime.fromisoformat(end).replace(tzinfo=UTC)
    run = materialize_on_ray if engine == RAY else materialize
    return run(Path(feast), when).rows


@flow(name="features")
def features(workdir: str, end: str | None = None, max_len: int = 50, engine: str = LOCAL) -> str:
    """Build the day's sequence snapshots, apply the Feast repo and materialize incrementally.

    `end` (YYYY-MM-DD, default: now) bounds the materialization window. Returns the Feast workdir.
    `engine` ray computes the snapshots on Ray Data and materializes with Feast's Ray offline store
    and ray.engine (features.store_ray). The tasks are submitted one after the other,
    so they run on the flow's task runner (a RayTaskRunner puts them on Ray).
    """
    configure_run_logs()  # stage and epoch lines to this run's logs (UI)
    layout = Layout.of(workdir)
    build_task.submit(str(layout.curated), str(layout.feast), max_len, engine).result()
    register_domains_task.submit(str(layout.root)).result()
    apply_task.submit(str(layout.feast)).result()
    materialize_task.submit(str(layout.feast), end, engine).result()
    return str(layout.feast)


def onboarded_zones(layout: Layout) -> list[Path]:
    """Curated zones of the domains onboarded into this workdir (sorted, for determinism)."""
    base = layout.root / "onboard"
    if not base.is_dir():
        return []
    zones = (p / "lake" / "curated" for p in base.iterdir())
    return sorted(z for z in zones if (z / C.DOMAINS).is_dir())


@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def register_domains_task(workdir: str) -> list[str]:
    """Give Feast's domain view the main zone's domains plus every onboarded domain's row.

    `build` derives the domain view from the main curated zone only; onboarded domains live in
    their own curated zones, so they are merged in here (main rows win on a name clash) and
    survive every later rebuild of the features flow. Returns the registered domain names.
    """
    import pandas as pd
    import pyarrow as pa

    from features import io
    from features.feature_repo.sources import DOMAINS_FILE
    from features.store import data_dir, domain_table

    layout = Layout.of(workdir)
    frames = [io.read_table(z, C.DOMAINS).to_pandas() for z in [layout.curated, *onboarded_zones(layout)]]
    merged = pd.concat(frames, ignore_index=True).drop_duplicates(subset=[C.DOMAIN], keep="first")
    view_rows = domain_table(pa.Table.from_pandas(merged, preserve_index=False))
    io.write_table(view_rows, data_dir(layout.feast) / DOMAINS_FILE)
    return merged[C.DOMAIN].tolist()
