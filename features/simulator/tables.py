"""The simulator's tables: a day's source funnel, a domain-day of impressions, the items and domains."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features.simulator.clicks import click_probability
from features.simulator.world import (
    DOMAIN_FEATURES,
    K_INTERESTS,
    P_CLICK,
    SOURCE_DOMAIN,
    DomainSpec,
    LatentState,
    _categorical,
    _items_in_categories,
    _pool_cum,
    _rng,
    affinity,
    state_item_ids,
    state_user_ids,
)

DICT_COLUMNS = [C.DOMAIN, C.BEHAVIOR]  # low-cardinality columns worth dictionary-encoding in parquet


def _day_times(rng: np.random.Generator, day: date, n: int) -> np.ndarray:
    """n random epoch-microsecond times inside one UTC day."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    return start + rng.integers(0, 86_400 * 1_000_000, n)


def _ts(us: np.ndarray) -> pa.Array:
    """Epoch microseconds as a contract timestamp array."""
    return pa.array(us, type=pa.int64()).cast(C.TIMESTAMP)


def _strings(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Codes into a small vocabulary as a plain string array."""
    return pc.take(pa.array(values, pa.string()), pa.array(codes, pa.int32()))


def _behaviors_block(state: LatentState, seed: int, day_idx: int, day: date, block: int) -> pa.Table:
    """Source-domain funnel events of one user block on one day."""
    cfg = state.cfg
    rng = _rng(seed, 4, day_idx, block)
    lo, hi = block * cfg.user_block, min((block + 1) * cfg.user_block, cfg.n_users)
    users = np.arange(lo, hi)
    users = users[state.is_source[lo:hi]]
    counts = rng.poisson(cfg.browse_per_user_day * state.activity[users])
    u = np.repeat(users, counts)
    n = len(u)
    # category: one of the user's interests (by weight) most of the time, else exploration
    k = (rng.random(n)[:, None] > np.cumsum(state.interest_w[u], axis=1)).sum(axis=1).clip(0, K_INTERESTS - 1)
    cat = state.interest_cat[u, k]
    explore = rng.random(n) < 0.25
    cat[explore] = _categorical(rng, np.cumsum(state.category_pop), int(explore.sum()))
    items = _items_in_categories(state, rng, cat)
    t_browse = _day_times(rng, day, n)
    own = affinity(state, None, u, items)
    p_click = 0.12 + 0.35 * own
    clicked = rng.random(n) < p_click
    carted = clicked & (rng.random(n) < 0.30)
    bought = carted & (rng.random(n) < 0.40)
    day_start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    day_end = day_start + 86_400 * 1_000_000 - 1  # derived events stay inside the same day
    parts_t, parts_b, parts_idx = [t_browse], [np.zeros(n, np.int8)], [np.arange(n)]
    t_prev = t_browse
    for b, mask in enumerate((clicked, carted, bought), start=1):
        t_prev = np.minimum(t_prev + rng.integers(1, 600, n) * 1_000_000, day_end)
        parts_t.append(t_prev[mask])
        parts_b.append(np.full(int(mask.sum()), b, np.int8))
        parts_idx.append(np.flatnonzero(mask))
    # rows are grouped by behaviour, not sorted by time: the contract does not order rows, and
    # sorting millions of rows per block would dominate generation time
    t_all, b_all, idx = np.concatenate(parts_t), np.concatenate(parts_b), np.concatenate(parts_idx)
    item_idx = items[idx]
    value = np.where(b_all == 3, state.item_price[item_idx], np.nan)
    return pa.table(
        {
            C.EVENT_TIME: _ts(t_all),
            C.DOMAIN: _strings((SOURCE_DOMAIN,), np.zeros(len(t_all), np.int8)),
            C.USER_ID: pa.array(state_user_ids(u[idx])),
            C.ITEM_ID: pa.array(state_item_ids(item_idx)),
            C.BEHAVIOR: _strings(C.BEHAVIOR_TYPES, b_all),
            C.VALUE: pa.array(value, pa.float64(), from_pandas=True),
        },
        schema=C.SCHEMAS[C.BEHAVIORS],
    )



def _impressions_day(
    state: LatentState, seed: int, spec: DomainSpec, k: int, day_idx: int, day: date, n_days: int
) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray]:
    """One domain-day of impressions and their truth; also returns (user indices, p_click)."""
    cfg = state.cfg
    rng = _rng(seed, 5, k, day_idx)
    users = state.domain_users[spec.name]
    weight = state.activity[users].copy()
    is_cold = np.isin(users, state.cold_users[spec.name])
    if day_idx < n_days - 1:
        weight[is_cold] = 0.0  # cold-start users only show up on the test day
    else:  # test day: cold users make ~12 % of requests
        weight[is_cold] *= 0.12 * weight[~is_cold].sum() / max(weight[is_cold].sum(), 1e-12) / 0.88
    n_imp = int(cfg.impressions_per_domain_day * spec.traffic)
    per_req = 6
    n_req = max(n_imp // per_req, 1)
    req_users = users[_categorical(rng, np.cumsum(weight), n_req)]
    req_times = np.sort(_day_times(rng, day, n_req))
    sizes = rng.integers(4, 9, n_req)  # < 9: see the duplicate check below
    req = np.repeat(np.arange(n_req), sizes)
    pool, cum = _pool_cum(state, spec)
    items = pool[_categorical(rng, cum, len(req))]
    # one row per (request, item): a page never shows the same item twice. Rows of a request are
    # adjacent and a request has < 9 items, so comparing with the 8 previous rows finds every repeat.
    dup = np.zeros(len(req), bool)
    for lag in range(1, 9):
        dup[lag:] |= (req[lag:] == req[:-lag]) & (items[lag:] == items[:-lag])
    req, items = req[~dup], items[~dup]
    u = req_users[req]
    p = click_probability(state, spec.name, u, items)
    label = (rng.random(len(p)) < p).astype(np.float64)
    prefix = f"{spec.name}-{day:%Y%m%d}-"
    req_id = pc.binary_join_element_wise(
        prefix, pc.utf8_lpad(pc.cast(pa.array(req), pa.string()), 7, "0"), ""
    )
    dom = _strings((spec.name,), np.zeros(len(req), np.int8))
    item_ids = pa.array(state_item_ids(items))
    imp = pa.table(
        {
            C.EVENT_TIME: _ts(req_times[req]),
            C.REQUEST_ID: req_id,
            C.DOMAIN: dom,
            C.USER_ID: pa.array(state_user_ids(u)),
            C.ITEM_ID: item_ids,
            C.LABEL: pa.array(label),
        },
        schema=C.SCHEMAS[C.IMPRESSIONS],
    )
    truth = pa.table({C.REQUEST_ID: req_id, C.ITEM_ID: item_ids, C.DOMAIN: dom, P_CLICK: pa.array(p)})
    return imp, truth, u, np.column_stack([p, label])


def _items_table(state: LatentState) -> pa.Table:
    """The items dimension table (brand unknown for ~1 % of items: side info is nullable)."""
    n = state.cfg.n_items
    brand = pa.array(state.item_brand.astype(np.int64), mask=(np.arange(n) % 97 == 0))
    return pa.table(
        {
            C.ITEM_ID: pa.array(state_item_ids(np.arange(n))),
            C.CATEGORY_ID: pa.array(state.item_category + 1),
            C.BRAND_ID: brand,
            C.SHOP_ID: pa.array(state.item_shop.astype(np.int64) + 1),
            C.PRICE: pa.array(state.item_price, pa.float64(), from_pandas=True),
        },
        schema=C.SCHEMAS[C.ITEMS],
    )


def _domains_table(rows: list[tuple[str, str, str, tuple[str, str, str]]]) -> pa.Table:
    """A domains table with the contract columns plus the domain features."""
    data: dict[str, list[str]] = {C.DOMAIN: [], C.ROLE: [], C.TASK: [], **{f: [] for f in DOMAIN_FEATURES}}
    for name, role, task, feats in rows:
        for col, val in zip(
            (C.DOMAIN, C.ROLE, C.TASK, *DOMAIN_FEATURES), (name, role, task, *feats), strict=True
        ):
            data[col].append(val)
    return pa.table(data)


