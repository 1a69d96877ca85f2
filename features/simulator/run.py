"""simulate(): the seeded landing zone, day by day, with its `_truth/` and manifest; readers of both."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features.io import LANDING_OUTPUT, atomic_dir, read_table, write_table
from features.simulator.tables import (
    DICT_COLUMNS,
    _behaviors_block,
    _domains_table,
    _impressions_day,
    _items_table,
)
from features.simulator.world import (
    MANIFEST,
    N_DAYS,
    ONBOARD,
    ONBOARD_DIR,
    SOURCE_DOMAIN,
    SOURCE_FEATURES,
    START_DATE,
    TRUTH_DIR,
    USER_ID_BASE,
    _stream,
    latent_state,
    target_specs,
)
from features.simulator.writer import BackgroundWriter


@dataclass
class DomainStats:
    """Measured figures of one target domain."""

    impressions: int = 0
    clicks: int = 0
    users: int = 0
    overlap: float = 0.0
    cold_test_users: int = 0

    @property
    def ctr(self) -> float:
        """Clicks / impressions."""
        return self.clicks / max(self.impressions, 1)


@dataclass
class SimulationSummary:
    """What simulate() wrote: rows per table, seconds and per-domain figures."""

    preset: str
    seed: int
    out: Path
    days: list[str]
    rows: dict[str, int]
    seconds: float
    domains: dict[str, DomainStats] = field(default_factory=dict)
    onboard_domain: str = ONBOARD.name

    @property
    def total_rows(self) -> int:
        """All rows written (contract tables, onboarding impressions included)."""
        return sum(self.rows.values())



def simulate(
    preset: str, seed: int, out: Path | str, n_days: int = N_DAYS, n_targets: int = 3
) -> SimulationSummary:
    """Write a seeded landing zone (+ `_truth/`, `_onboard/`) for `preset` to `out`, atomically."""
    import time

    t0 = time.perf_counter()
    if n_days < 2:
        raise ValueError(f"n_days must be >= 2 (training days + one test day), got {n_days}")
    state = latent_state(preset, seed, n_targets)
    cfg = state.cfg
    specs = target_specs(n_targets)
    days = [START_DATE + timedelta(days=i) for i in range(n_days)]
    rows = {C.IMPRESSIONS: 0, C.BEHAVIORS: 0, C.ITEMS: cfg.n_items, C.DOMAINS: len(specs) + 1, "onboard": 0}
    seen: dict[str, np.ndarray] = {s.name: np.zeros(cfg.n_users, bool) for s in (*specs, ONBOARD)}
    trained: dict[str, np.ndarray] = {s.name: np.zeros(cfg.n_users, bool) for s in (*specs, ONBOARD)}
    source_seen = np.zeros(cfg.n_users, bool)
    stats = {s.name: DomainStats() for s in (*specs, ONBOARD)}
    test_users: dict[str, np.ndarray] = {}
    out = Path(out)
    writer = BackgroundWriter()
    with atomic_dir(out, kind=LANDING_OUTPUT) as tmp:
        onboard_root = tmp / ONBOARD_DIR / ONBOARD.name
        try:
            for d_idx, day in enumerate(days):
                dt = day.isoformat()
                for block in range(-(-cfg.n_users // cfg.user_block)):
                    beh = _behaviors_block(state, seed, d_idx, day, block)
                    source_seen[pc.subtract(beh.column(C.USER_ID), USER_ID_BASE).to_numpy()] = True
                    path = C.partition_dir(tmp, C.BEHAVIORS, dt) / f"part-{block:05d}.parquet"
                    writer.submit(beh, path, DICT_COLUMNS)
                    rows[C.BEHAVIORS] += beh.num_rows
                for spec in (*specs, ONBOARD):
                    is_onb = spec is ONBOARD
                    imp, truth, u, pl = _impressions_day(state, seed, spec, _stream(spec), d_idx, day, n_days)
                    root = onboard_root if is_onb else tmp
                    name = f"part-{spec.name}.parquet"
                    writer.submit(imp, C.partition_dir(root, C.IMPRESSIONS, dt) / name, DICT_COLUMNS)
                    writer.submit(
                        truth, C.partition_dir(root / TRUTH_DIR, C.IMPRESSIONS, dt) / name, DICT_COLUMNS
                    )
                    rows["onboard" if is_onb else C.IMPRESSIONS] += imp.num_rows
                    st = stats[spec.name]
                    st.impressions += len(pl)
                    st.clicks += int(pl[:, 1].sum())
                    seen[spec.name][u] = True
                    if d_idx < n_days - 1:
                        trained[spec.name][u] = True
                    else:
                        test_users[spec.name] = u
        finally:
            writer.close()
        write_table(_items_table(state), tmp / C.ITEMS / "items.parquet")
        write_table(
            _domains_table(
                [(SOURCE_DOMAIN, C.ROLE_SOURCE, C.TASK_CTR, SOURCE_FEATURES)]
                + [(s.name, C.ROLE_TARGET, C.TASK_CTR, s.features) for s in specs]
            ),
            tmp / C.DOMAINS / "domains.parquet",
        )
        write_table(
            _domains_table([(ONBOARD.name, C.ROLE_TARGET, C.TASK_CTR, ONBOARD.features)]),
            onboard_root / C.DOMAINS / "domains.parquet",
        )
        manifest = {
            "preset": preset,
            "seed": seed,
            "n_days": n_days,
            "n_targets": n_targets,
            "start": START_DATE.isoformat(),
            "source": SOURCE_DOMAIN,
            "targets": [s.name for s in specs],
            "onboard": ONBOARD.name,
        }
        (tmp / TRUTH_DIR).mkdir(exist_ok=True)
        (tmp / TRUTH_DIR / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for name, st in stats.items():
        users = seen[name]
        st.users = int(users.sum())
        st.overlap = float((users & source_seen).sum() / max(st.users, 1))
        tu = np.unique(test_users[name])
        st.cold_test_users = int((~trained[name][tu] & source_seen[tu]).sum())
    return SimulationSummary(
        preset, seed, out, [d.isoformat() for d in days], rows, time.perf_counter() - t0, stats
    )


def read_manifest(out: Path | str) -> dict:
    """The run's `_truth/simulation.json` (preset, seed, domains)."""
    path = Path(out) / TRUTH_DIR / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a simulator output (no manifest)")
    return json.loads(path.read_text())


def _zone(out: Path, domain: str) -> Path:
    """The landing zone holding a domain's impressions (main, or the onboarding zone)."""
    onboard = out / ONBOARD_DIR / domain
    return onboard if onboard.is_dir() else out


def truth_of_test_day(out: Path | str, domain: str) -> pa.Table:
    """Test-day impressions of one domain joined to their true p_click."""
    out = Path(out)
    zone = _zone(out, domain)
    day = C.list_days(zone, C.IMPRESSIONS)[-1]
    imp = read_table(zone, C.IMPRESSIONS, day)
    imp = imp.filter(pc.equal(imp.column(C.DOMAIN), domain))
    truth = read_table_truth(zone, day)
    return imp.join(truth, [C.REQUEST_ID, C.ITEM_ID, C.DOMAIN], join_type="inner")


def read_table_truth(zone: Path, day: str) -> pa.Table:
    """The `_truth/impressions` rows of one day."""
    import pyarrow.parquet as pq

    parts = C.list_partitions(zone / TRUTH_DIR, C.IMPRESSIONS, day)
    if not parts:
        raise FileNotFoundError(f"{zone / TRUTH_DIR}: no truth for dt={day}")
    return pa.concat_tables([pq.read_table(p.path) for p in parts])



def summary_dict(summary: SimulationSummary) -> dict:
    """A JSON-friendly view of a summary."""
    return {
        "preset": summary.preset,
        "seed": summary.seed,
        "out": str(summary.out),
        "days": summary.days,
        "rows": summary.rows,
        "seconds": round(summary.seconds, 2),
        "domains": {k: {**asdict(v), "ctr": v.ctr} for k, v in summary.domains.items()},
    }

