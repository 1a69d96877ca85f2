"""`simulate_online`: simulated users against a ranking service; the days land as contract-valid logs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from features import contract as C
from features.io import check_contract, read_table
from features.served import read_clicks, read_served
from features.simulator import latent_state, simulate
from features.simulator.arms import SimArm, SimService, true_scorer
from features.simulator.traffic import ONLINE_DIR, simulate_online

DOMAIN = "fashion_feed"


def _zone(path: Path) -> Path:
    """A two-day, one-target tiny zone."""
    simulate("tiny", seed=0, out=path, n_days=2, n_targets=1)
    return path


def _service(seed: int) -> SimService:
    """Two live arms and a shadow arm, 20 % exploration."""
    world = latent_state("tiny", 0, 1)
    return SimService([SimArm("control", "m:a", 0.5, true_scorer(world, DOMAIN, 1.0)),
                       SimArm("candidate", "m:b", 0.5, true_scorer(world, DOMAIN)),
                       SimArm("shadow", "m:c", 0.0, true_scorer(world, DOMAIN, 2.0), mode="shadow")],
                      salt="x", epsilon=0.2, seed=seed)


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every parquet file under root."""
    files = root.rglob("*.parquet")
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_online_days_are_valid_logs_and_seeded(tmp_path: Path) -> None:
    """Two online days after the zone's last day: contract-valid impressions (shown arms only), the
    served log of every arm and the clicks; the same seed writes the same bytes."""
    zone = _zone(tmp_path / "a")
    days = simulate_online(zone, {DOMAIN: _service(1)}, days=2, seed=4, requests_per_day=120,
                           shadow_arms={DOMAIN: ["shadow"]})
    assert [d.day for d in days] == ["2026-09-03", "2026-09-04"]
    check_contract(zone)
    assert C.list_days(zone) == ["2026-09-01", "2026-09-02", "2026-09-03", "2026-09-04"]
    imp = read_table(zone, C.IMPRESSIONS, "2026-09-03")
    served = read_served(zone / ONLINE_DIR, ["2026-09-03"])
    assert served.num_rows == 120 * 10 * 2  # one live arm per request plus the shadow arm's rows
    assert days[0].impressions == imp.num_rows == 120 * 10  # the shadow arm's rows are not impressions
    clicks = read_clicks(zone / ONLINE_DIR)
    assert clicks.num_rows == sum(d.clicks for d in days) > 0
    other = _zone(tmp_path / "b")
    simulate_online(other, {DOMAIN: _service(1)}, days=2, seed=4, requests_per_day=120,
                    shadow_arms={DOMAIN: ["shadow"]})
    assert _digest(zone) == _digest(other)


def test_days_continue_after_the_zone_and_touch_nothing_else(tmp_path: Path) -> None:
    """Online days start after the last day present; every file already there is left as it was."""
    zone = _zone(tmp_path / "z")
    mine = C.partition_dir(zone, C.IMPRESSIONS, "2026-09-03") / "mine.parquet"
    mine.parent.mkdir(parents=True)
    read_table(zone, C.IMPRESSIONS, "2026-09-02").to_pandas().to_parquet(mine)
    before = _digest(zone)
    days = simulate_online(zone, {DOMAIN: _service(1)}, days=1, seed=4, requests_per_day=10,
                           state=latent_state("tiny", 0, 1))
    assert [d.day for d in days] == ["2026-09-04"]
    after = _digest(zone)
    assert {k: after[k] for k in before} == before
