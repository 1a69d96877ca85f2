"""`simulate online`: the simulator's users send ranking requests to a service and click on its answers.

Each day and domain: requests (a user drawn by activity, a time in the day, a candidate set drawn
by popularity from the domain's scope) go to a ranking service (a `RankService`: the live HTTP
service of features/simulator/http.py, or in-process arms of features/simulator/arms.py); the
service's served rows come back in the served-log schema (features/served.py); the Responder
clicks on the shown rows (examination x true click probability); the served log, the click log and
their join as contract impressions land as that day's logs:

    <out>/impressions/dt=D/part-online-<domain>.parquet    contract impressions (for the daily flow)
    <out>/_online/served/dt=D/part-<domain>.parquet         served rows, every arm (the A/B report)
    <out>/_online/clicks/dt=D/part-<domain>.parquet         clicks and purchases

Same world, seed and service answers, same traffic and clicks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features.io import write_table
from features.served import CLICKS, CLICKS_SCHEMA, POSITION, SERVED, impressions_of, join_clicks
from features.simulator.clicks import Responder
from features.simulator.run import read_manifest
from features.simulator.tables import _behaviors_block, _day_times, _ts
from features.simulator.world import (
    ONBOARD,
    PRESETS,
    START_DATE,
    TARGETS,
    LatentState,
    _categorical,
    _pool_cum,
    _rng,
    _stream,
    latent_state,
    state_item_ids,
    state_user_ids,
)

ONLINE_DIR = "_online"
TRAFFIC_STREAM, CLICK_DELAY_S = 8, 600


@dataclass(frozen=True)
class Requests:
    """One domain-day of ranking requests (raw ids), and the random-stream key that made them."""

    domain: str
    day: date
    key: tuple[int, int]  # (domain stream, day index): seeds whatever is drawn for these requests
    request_id: np.ndarray  # (R,) str
    user_id: np.ndarray  # (R,) int64
    time_us: np.ndarray  # (R,) int64 epoch microseconds
    item_ids: np.ndarray  # (R, K) int64 candidates

    def __len__(self) -> int:
        """Number of requests."""
        return len(self.request_id)


# A ranking service: requests in, served rows (features.served.SERVED_SCHEMA, every arm) out.
RankService = Callable[[Requests], pa.Table]


def _spec(domain: str):  # -> DomainSpec
    """The spec of a simulated target domain (onboarding domain included)."""
    for spec in (*TARGETS, ONBOARD):
        if spec.name == domain:
            return spec
    raise ValueError(f"domain {domain!r} is not simulated (known: {[s.name for s in (*TARGETS, ONBOARD)]})")


def day_requests(
    state: LatentState, seed: int, domain: str, day: date, day_idx: int, n_requests: int, n_candidates: int
) -> Requests:
    """n_requests requests of one domain-day, each with n_candidates distinct items of the domain's scope."""
    spec = _spec(domain)
    key = (_stream(spec), day_idx)
    rng = _rng(seed, TRAFFIC_STREAM, *key)
    users = state.domain_users[domain]
    req_users = users[_categorical(rng, np.cumsum(state.activity[users]), n_requests)]
    times = np.sort(_day_times(rng, day, n_requests))
    pool, _ = _pool_cum(state, spec)
    if n_candidates > len(pool):
        raise ValueError(f"{domain} has {len(pool)} items; cannot draw {n_candidates} candidates")
    # popularity-weighted sampling without replacement per request: Gumbel top-k over log popularity
    keys = np.log(state.item_pop[pool])[None, :] + rng.gumbel(size=(n_requests, len(pool)))
    top = np.argpartition(-keys, n_candidates - 1, axis=1)[:, :n_candidates]
    numbers = pc.utf8_lpad(pc.cast(pa.array(np.arange(n_requests)), pa.string()), 7, "0")
    ids = pc.binary_join_element_wise(f"{domain}-{day:%Y%m%d}-q", numbers, "")
    return Requests(domain, day, key, np.asarray(ids.to_pylist(), dtype=object), state_user_ids(req_users),
                    times, state_item_ids(pool[top]))


def clicks_of(responder: Responder, requests: Requests, shown: pa.Table) -> pa.Table:
    """The responder's clicks (and purchases) on the shown served rows, as a click log."""
    shown = shown.take(pc.sort_indices(shown, [(C.REQUEST_ID, "ascending"), (POSITION, "ascending")]))
    res = responder.respond(
        requests.domain, shown.column(C.USER_ID).to_numpy(), shown.column(C.ITEM_ID).to_numpy(),
        shown.column(POSITION).to_numpy(), requests.key,
    )
    hit = np.flatnonzero(res.click)
    t_shown = pc.cast(shown.column(C.EVENT_TIME), pa.int64()).to_numpy()[hit]
    day_end = int((np.datetime64(requests.day + timedelta(days=1), "us")).astype(np.int64)) - 1
    delay = _rng(responder.seed, TRAFFIC_STREAM + 1, *requests.key).integers(1, CLICK_DELAY_S, len(hit))
    return pa.table(
        {
            C.REQUEST_ID: shown.column(C.REQUEST_ID).take(pa.array(hit)),
            C.EVENT_TIME: _ts(np.minimum(t_shown + delay * 1_000_000, day_end)),
            C.DOMAIN: pa.array([requests.domain] * len(hit), pa.string()),
            C.ITEM_ID: pa.array(shown.column(C.ITEM_ID).to_numpy()[hit]),
            "purchase_value": pa.array(res.value[hit]),
        },
        schema=CLICKS_SCHEMA,
    )


def serve_and_click(
    responder: Responder, service: RankService, requests: Requests, shadow_arms: Sequence[str] = ()
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(served rows, clicks, shown rows joined with their clicks) of one batch of requests."""
    served = service(requests)
    shown = join_clicks(served, CLICKS_SCHEMA.empty_table(), shadow_arms)  # what the users saw
    clicks = clicks_of(responder, requests, shown)
    return served, clicks, join_clicks(served, clicks, shadow_arms)


@dataclass(frozen=True)
class OnlineDay:
    """What one domain-day of online traffic produced."""

    domain: str
    day: str
    requests: int
    served_rows: int
    impressions: int
    clicks: int


def online_days(out: Path | str, days: int) -> list[tuple[int, date]]:
    """The next `days` (index, date) after the zone's last impressions day."""
    existing = C.list_days(out, C.IMPRESSIONS)
    first = date.fromisoformat(existing[-1]) + timedelta(days=1) if existing else START_DATE
    start_idx = (first - START_DATE).days
    return [(start_idx + i, first + timedelta(days=i)) for i in range(days)]


def simulate_online(
    out: Path | str,
    services: dict[str, RankService],
    days: int,
    seed: int,
    requests_per_day: int = 300,
    n_candidates: int = 10,
    shadow_arms: dict[str, Sequence[str]] | None = None,
    state: LatentState | None = None,
) -> list[OnlineDay]:
    """Drive `services` (domain -> RankService) with the world of the simulator zone `out` for `days`."""
    out = Path(out)
    manifest = read_manifest(out)
    state = state or latent_state(manifest["preset"], manifest["seed"], manifest["n_targets"])
    responder = Responder(state, seed)
    done = []
    for day_idx, day in online_days(out, days):
        dt = day.isoformat()
        if C.list_partitions(out, C.IMPRESSIONS, dt):
            raise FileExistsError(f"{C.partition_dir(out, C.IMPRESSIONS, dt)} already holds logs")
        # the world keeps browsing the source domain: the day's behaviours, as the offline days have
        cfg = PRESETS[manifest["preset"]]
        for block in range(-(-cfg.n_users // cfg.user_block)):
            beh = _behaviors_block(state, manifest["seed"], day_idx, day, block)
            write_table(beh, C.partition_dir(out, C.BEHAVIORS, dt) / f"part-{block:05d}.parquet")
        for domain, service in services.items():
            requests = day_requests(state, seed, domain, day, day_idx, requests_per_day, n_candidates)
            shadow = (shadow_arms or {}).get(domain, ())
            served, clicks, joined = serve_and_click(responder, service, requests, shadow)
            name = f"part-{domain}.parquet"
            write_table(served, C.partition_dir(out / ONLINE_DIR, SERVED, dt) / name)
            write_table(clicks, C.partition_dir(out / ONLINE_DIR, CLICKS, dt) / name)
            imp_path = C.partition_dir(out, C.IMPRESSIONS, dt) / f"part-online-{domain}.parquet"
            write_table(impressions_of(joined), imp_path)
            counts = (len(requests), served.num_rows, joined.num_rows, clicks.num_rows)
            done.append(OnlineDay(domain, dt, *counts))
    return done
