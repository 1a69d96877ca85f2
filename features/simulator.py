"""Seeded multi-domain log simulator: a rich source domain, sparse shifted target domains, a late new one.

The generative model (vectorised numpy, written day by day and user block by user block):

- C item categories grouped into named business *scopes*; items have a category, brand, shop, price,
  power-law popularity and a latent quality.
- users have a sparse latent interest (K categories with Dirichlet weights), a power-law activity and a
  small latent click propensity; ~25 % of users never use the source domain (target-only users).
- the source domain `central` logs a browse -> click -> cart -> purchase funnel driven by the interests.
- each target domain d shows items of its own scope only and *shifts* interests: the categories that
  drive clicks in d are  lam_d * (the user's in-scope interests) + mu * m_d(the user's "feeder" interests),
  where m_d maps some source categories (e.g. home appliances) onto scope categories (e.g. clothing) and
  the other source categories carry no signal for d. Naive transfer of the whole source history is noise;
  picking the right source behaviours per domain pays off (DACDR's domain-aware attention).
- click probability = sigmoid(alpha * affinity_d + beta * quality + gamma * propensity + bias_d), with
  bias_d calibrated so each domain hits its CTR; the probability of every impression goes to `_truth/`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features.io import LANDING_OUTPUT, atomic_dir, read_table, write_table

START_DATE = date(2026, 9, 1)  # fixed so output is deterministic per seed
N_DAYS = 11  # first 10 train, last one test (paper: 11 days)
SOURCE_DOMAIN = "central"
TRUTH_DIR = "_truth"
ONBOARD_DIR = "_onboard"
P_CLICK = "p_click"
TRUTH_COLUMNS: tuple[str, ...] = (C.REQUEST_ID, C.ITEM_ID, C.DOMAIN, P_CLICK)
MANIFEST = "simulation.json"
DOMAIN_FEATURES: tuple[str, ...] = ("page_type", "business_line", "placement")
SCOPES: tuple[str, ...] = (
    "appliances",
    "electronics",
    "clothing",
    "shoes",
    "home",
    "beauty",
    "grocery",
    "sports",
)
USER_ID_BASE = 10_000_000  # raw ids are not dense indices, so nobody can confuse the two
ITEM_ID_BASE = 500_000_000
K_INTERESTS = 4
# click-logit weights; tuned so oracle AUC sits in ~0.74-0.80 for every target domain
ALPHA, BETA, GAMMA = 5.0, 0.35, 0.35
_DICT_COLUMNS = [C.DOMAIN, C.BEHAVIOR]  # low-cardinality columns worth dictionary-encoding in parquet
MU = 1.0  # weight of the cross-scope (shifted) interests in a target domain


@dataclass(frozen=True)
class DomainSpec:
    """One domain's business scope, interest shift, traffic and features."""

    name: str
    scope: tuple[str, ...]  # scopes whose items it shows
    feeders: tuple[str, ...]  # source scopes whose interests drive clicks here (through m_d)
    lam: float  # weight of the user's own in-scope interests
    overlap: float  # share of its users who also use the source domain
    ctr: float  # calibrated click-through rate
    traffic: float  # impressions per day relative to the preset's per-domain volume
    features: tuple[str, str, str]  # page_type, business_line, placement


TARGETS: tuple[DomainSpec, ...] = (
    DomainSpec(
        "fashion_feed",
        ("clothing", "shoes"),
        ("appliances", "home", "electronics"),
        0.25,
        0.90,
        0.016,
        1.0,
        ("feed", "fashion", "home_tab"),
    ),
    DomainSpec(
        "deals_page",
        ("electronics", "grocery"),
        ("clothing", "sports", "beauty"),
        0.30,
        0.73,
        0.021,
        1.0,
        ("promo", "deals", "banner"),
    ),
    DomainSpec(
        "home_living",
        ("home", "appliances"),
        ("grocery", "electronics", "shoes"),
        0.25,
        0.80,
        0.0185,
        1.0,
        ("feed", "home", "detail_page"),
    ),
    DomainSpec(
        "sports_zone",
        ("sports", "shoes"),
        ("clothing", "beauty", "grocery"),
        0.30,
        0.82,
        0.018,
        1.0,
        ("channel", "sports", "side_rail"),
    ),
    DomainSpec(
        "digital_hub",
        ("electronics",),
        ("appliances", "sports", "home"),
        0.30,
        0.78,
        0.017,
        1.0,
        ("search", "digital", "top_slot"),
    ),
)
ONBOARD = DomainSpec(
    "beauty_launch",
    ("beauty", "grocery"),
    ("clothing", "shoes", "home"),
    0.25,
    0.85,
    0.019,
    0.08,
    ("feed", "beauty", "popup"),
)  # page_type shared, business_line/placement new
SOURCE_FEATURES = ("home", "general", "main_feed")


@dataclass(frozen=True)
class PresetConfig:
    """Sizes of one preset."""

    n_users: int
    n_items: int
    n_categories: int
    n_brands: int
    n_shops: int
    browse_per_user_day: float  # mean browse events per source user per day
    impressions_per_domain_day: int
    user_block: int  # users generated per chunk (bounds memory)


PRESETS: dict[str, PresetConfig] = {
    "tiny": PresetConfig(1_500, 1_000, 32, 120, 60, 9.0, 2_600, 100_000),
    "demo": PresetConfig(20_000, 8_000, 48, 600, 300, 2.5, 30_000, 100_000),
    "bench": PresetConfig(1_000_000, 200_000, 64, 8_000, 3_000, 1.5, 400_000, 125_000),
}


@dataclass
class DomainStats:
    """Measured figures of one target domain."""

    impressions: int = 0
    clicks: int = 0
    users: int = 0
    overlap: float = 0.0
    cold_test_users: int = 0
    oracle_auc: float = 0.0

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


@dataclass
class LatentState:
    """The simulator's hidden truth, rebuilt from (preset, seed) alone."""

    cfg: PresetConfig
    scope_of_category: np.ndarray  # (C,) scope index
    category_pop: np.ndarray  # (C,) probability
    item_category: np.ndarray  # (I,)
    item_brand: np.ndarray
    item_shop: np.ndarray
    item_price: np.ndarray  # float, NaN = unknown
    item_pop: np.ndarray  # (I,) popularity weight
    item_quality: np.ndarray  # (I,)
    is_source: np.ndarray  # (U,) bool: uses the source domain
    interest_cat: np.ndarray  # (U, K) int
    interest_w: np.ndarray  # (U, K) float, rows sum to 1
    activity: np.ndarray  # (U,) mean 1, power law
    propensity: np.ndarray  # (U,) latent click propensity
    transfer: dict[str, np.ndarray]  # domain -> (C, C) shifted interest map T_d
    domain_users: dict[str, np.ndarray]  # domain -> user indices (sorted)
    cold_users: dict[str, np.ndarray]  # domain -> users with impressions only on the test day
    bias: dict[str, float]  # domain -> calibrated logit bias
    item_index: dict[str, np.ndarray] = field(default_factory=dict)  # items sorted by category (lazy cache)


def _rng(seed: int, *tags: int) -> np.random.Generator:
    """An independent generator per (seed, stream...): chunks stay reproducible whatever the order."""
    return np.random.default_rng(np.random.SeedSequence([seed, *tags]))


def _stream(spec: DomainSpec) -> int:
    """A domain's random-stream number: fixed per domain, whatever n_targets is."""
    return len(TARGETS) if spec is ONBOARD else TARGETS.index(spec)


def _check_preset(preset: str) -> PresetConfig:
    """The preset's config, or a clear error."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    return PRESETS[preset]


def target_specs(n_targets: int = 3) -> tuple[DomainSpec, ...]:
    """The first `n_targets` target-domain specs."""
    if not 1 <= n_targets <= len(TARGETS):
        raise ValueError(f"n_targets must be in 1..{len(TARGETS)}, got {n_targets}")
    return TARGETS[:n_targets]


def _search(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """np.searchsorted(cum, u, side='right') for many random u, via a guide table (cache-friendly).

    A guide table over 2*len(cum) equal-width buckets gives each u a start index a few steps from
    its answer; the steps run vectorised. Same result as searchsorted, several times faster.
    """
    n = len(cum)
    m = 2 * n + 1
    total = cum[-1]
    guide = np.searchsorted(cum, np.arange(m + 1) * (total / m), side="right")
    idx = guide[np.minimum((u * (m / total)).astype(np.int64), m)]
    np.minimum(idx, n - 1, out=idx)
    todo = np.flatnonzero(cum[idx] <= u)
    while todo.size:
        idx[todo] += 1
        np.minimum(idx, n - 1, out=idx)
        todo = todo[(cum[idx[todo]] <= u[todo]) & (idx[todo] < n - 1)]
    return idx


def _categorical(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """n draws from the distribution with cumulative weights `cum` (vectorised)."""
    return _search(cum, rng.random(n) * cum[-1])


def _scope_categories(scope_of_category: np.ndarray, scopes: tuple[str, ...]) -> np.ndarray:
    """Category indices belonging to the named scopes."""
    idx = [SCOPES.index(s) for s in scopes]
    return np.flatnonzero(np.isin(scope_of_category, idx))


def latent_state(preset: str, seed: int, n_targets: int = 3) -> LatentState:
    """Build the hidden users/items/domains of a run from (preset, seed): same inputs, same state."""
    cfg = _check_preset(preset)
    rng = _rng(seed, 1)
    n_c, n_i, n_u = cfg.n_categories, cfg.n_items, cfg.n_users
    scope_of_category = np.arange(n_c) % len(SCOPES)
    category_pop = rng.dirichlet(np.full(n_c, 6.0))
    # items: category by category popularity, Zipf-like popularity, quality partly tied to popularity
    item_category = _categorical(rng, np.cumsum(category_pop), n_i)
    item_brand = rng.integers(0, cfg.n_brands, n_i)
    item_shop = rng.integers(0, cfg.n_shops, n_i)
    item_price = np.round(rng.lognormal(3.5, 1.0, n_i), 2)
    item_price[rng.random(n_i) < 0.02] = np.nan  # some items have no known price (nullable by contract)
    item_pop = rng.pareto(1.3, n_i) + 1.0
    item_quality = rng.normal(0, 1, n_i) + 0.3 * np.log(item_pop)
    item_quality = (item_quality - item_quality.mean()) / item_quality.std()
    # users: sparse interests (categories drawn with replacement: repeats just add weight)
    is_source = rng.random(n_u) < 0.75
    interest_cat = _categorical(rng, np.cumsum(category_pop), n_u * K_INTERESTS).reshape(n_u, K_INTERESTS)
    interest_w = rng.dirichlet(np.ones(K_INTERESTS), n_u).astype(np.float32)  # float32: halves memory traffic
    activity = np.minimum(rng.pareto(2.0, n_u) + 0.5, 15.0)
    activity /= activity.mean()
    propensity = rng.normal(0, 1, n_u)

    specs = (*target_specs(n_targets), ONBOARD)
    transfer, domain_users, cold_users = {}, {}, {}
    src_users = np.flatnonzero(is_source)
    only_users = np.flatnonzero(~is_source)
    for spec in specs:
        drng = _rng(seed, 2, _stream(spec))
        in_scope = _scope_categories(scope_of_category, spec.scope)
        feeders = _scope_categories(scope_of_category, spec.feeders)
        t = np.zeros((n_c, n_c), np.float32)
        t[in_scope, in_scope] = spec.lam
        t[feeders, drng.choice(in_scope, len(feeders))] += MU  # m_d: feeder category -> one scope category
        transfer[spec.name] = t
        reach = 0.55 if spec is not ONBOARD else 0.2
        n_src = int(round(reach * len(src_users)))
        n_only = min(int(round(n_src * (1 - spec.overlap) / spec.overlap)), len(only_users))
        src = drng.choice(src_users, n_src, replace=False)
        users = np.sort(np.concatenate([src, drng.choice(only_users, n_only, replace=False)]))
        domain_users[spec.name] = users
        cold_users[spec.name] = np.sort(drng.choice(src, max(1, n_src // 12), replace=False))
    state = LatentState(
        cfg,
        scope_of_category,
        category_pop,
        item_category,
        item_brand,
        item_shop,
        item_price,
        item_pop,
        item_quality,
        is_source,
        interest_cat,
        interest_w,
        activity,
        propensity,
        transfer,
        domain_users,
        cold_users,
        {},
    )
    for spec in specs:
        state.bias[spec.name] = _calibrate_bias(state, spec, _rng(seed, 3, _stream(spec)))
    return state


def affinity(state: LatentState, domain: str | None, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Interest of user index -> item index; `domain=None` ignores the domain's shift (raw interests)."""
    cats = state.item_category[items]
    ucat, uw = state.interest_cat[users], state.interest_w[users]
    if domain is None:
        return (uw * (ucat == cats[:, None])).sum(axis=1)
    n_c = state.cfg.n_categories
    # T_d[user interest category, item category], gathered from the flattened matrix in one take
    flat = state.transfer[domain].ravel()
    return (uw * flat[ucat * n_c + cats[:, None]]).sum(axis=1)


def click_logit(
    state: LatentState, domain: str, users: np.ndarray, items: np.ndarray, shifted: bool = True
) -> np.ndarray:
    """True click logit of (user index, item index) pairs in a domain (shifted=False: the naive score)."""
    aff = affinity(state, domain if shifted else None, users, items)
    return (
        ALPHA * aff
        + BETA * state.item_quality[items]
        + GAMMA * state.propensity[users]
        + state.bias.get(domain, 0.0)
    )


def _pool_cum(state: LatentState, spec: DomainSpec) -> tuple[np.ndarray, np.ndarray]:
    """A domain's item pool (its scope) and cumulative popularity over it."""
    pool = np.flatnonzero(
        np.isin(state.item_category, _scope_categories(state.scope_of_category, spec.scope))
    )
    return pool, np.cumsum(state.item_pop[pool])


def _calibrate_bias(state: LatentState, spec: DomainSpec, rng: np.random.Generator) -> float:
    """Logit bias giving the domain its target CTR on a sample of its own traffic (bisection)."""
    users = state.domain_users[spec.name]
    u = users[_categorical(rng, np.cumsum(state.activity[users]), 50_000)]
    pool, cum = _pool_cum(state, spec)
    i = pool[_categorical(rng, cum, len(u))]
    base = click_logit(state, spec.name, u, i) - state.bias.get(spec.name, 0.0)
    lo, hi = -20.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(base + mid)))).mean() < spec.ctr:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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


def state_user_ids(users: np.ndarray) -> np.ndarray:
    """Raw user_id of user indices."""
    return (USER_ID_BASE + users).astype(np.int64)


def state_item_ids(items: np.ndarray) -> np.ndarray:
    """Raw item_id of item indices."""
    return (ITEM_ID_BASE + items).astype(np.int64)


def _category_index(state: LatentState) -> dict[str, np.ndarray]:
    """Items sorted by category with their cumulative popularity and each category's cum range (cached)."""
    if not state.item_index:
        order = np.argsort(state.item_category, kind="stable")
        cum = np.cumsum(state.item_pop[order])
        bounds = np.searchsorted(state.item_category[order], np.arange(state.cfg.n_categories + 1))
        lo = np.where(bounds[:-1] > 0, cum[np.maximum(bounds[:-1] - 1, 0)], 0.0)
        hi = np.where(bounds[1:] > 0, cum[np.maximum(bounds[1:] - 1, 0)], 0.0)
        state.item_index.update(order=order, cum=cum, lo=lo, hi=hi)
    return state.item_index


def _items_in_categories(state: LatentState, rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
    """One popularity-weighted item of each requested category (vectorised over a global cumsum)."""
    index = _category_index(state)
    order, cum, lo_c, hi_c = index["order"], index["cum"], index["lo"], index["hi"]
    empty = hi_c <= lo_c
    if empty[cats].any():  # a category without items: fall back to any item
        cats = np.where(empty[cats], state.item_category[order][0], cats)
    target = lo_c[cats] + rng.random(len(cats)) * (hi_c[cats] - lo_c[cats])
    return order[_search(cum, target)]


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
    p = 1.0 / (1.0 + np.exp(-click_logit(state, spec.name, u, items)))
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


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with tied scores averaged (rank statistic); NaN when only one class is present."""
    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores)[order]
    ranks = np.empty(len(s))
    # average ranks over ties
    uniq, start, counts = np.unique(s, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_auc(p: np.ndarray, scores: np.ndarray | None = None) -> float:
    """AUC of `scores` (default: p itself) against labels ~ Bernoulli(p), without sampling noise."""
    p = np.asarray(p, dtype=np.float64)
    s = p if scores is None else np.asarray(scores)
    uniq, inv = np.unique(s, return_inverse=True)
    pos = np.bincount(inv, weights=p, minlength=len(uniq))  # expected positives per score value
    neg = np.bincount(inv, weights=1 - p, minlength=len(uniq))
    neg_below = np.cumsum(neg) - neg
    wins = (pos * neg_below).sum() + 0.5 * (pos * neg).sum() - 0.5 * (p * (1 - p)).sum()  # no self-pairs
    total = pos.sum() * neg.sum() - (p * (1 - p)).sum()
    return float(wins / total)


class _BackgroundWriter:
    """Writes parquet files on one background thread (pyarrow releases the GIL) while the next chunk
    is generated; at most `depth` tables wait, so memory stays bounded. Errors surface on close()."""

    def __init__(self, depth: int = 2) -> None:
        """Start the writer thread."""
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simwrite")
        self._pending: list = []
        self._depth = depth

    def submit(self, tbl: pa.Table, path: Path, dictionary_columns: list[str] | None = None) -> None:
        """Queue one file; blocks while `depth` files are already waiting."""
        while len(self._pending) >= self._depth:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(write_table, tbl, path, dictionary_columns))

    def close(self) -> None:
        """Wait for every queued file; re-raise the first error."""
        try:
            for fut in self._pending:
                fut.result()
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True)


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
    test_pl: dict[str, np.ndarray] = {}
    test_users: dict[str, np.ndarray] = {}
    out = Path(out)
    writer = _BackgroundWriter()
    with atomic_dir(out, kind=LANDING_OUTPUT) as tmp:
        onboard_root = tmp / ONBOARD_DIR / ONBOARD.name
        try:
            for d_idx, day in enumerate(days):
                dt = day.isoformat()
                for block in range(-(-cfg.n_users // cfg.user_block)):
                    beh = _behaviors_block(state, seed, d_idx, day, block)
                    source_seen[pc.subtract(beh.column(C.USER_ID), USER_ID_BASE).to_numpy()] = True
                    path = C.partition_dir(tmp, C.BEHAVIORS, dt) / f"part-{block:05d}.parquet"
                    writer.submit(beh, path, _DICT_COLUMNS)
                    rows[C.BEHAVIORS] += beh.num_rows
                for spec in (*specs, ONBOARD):
                    is_onb = spec is ONBOARD
                    imp, truth, u, pl = _impressions_day(state, seed, spec, _stream(spec), d_idx, day, n_days)
                    root = onboard_root if is_onb else tmp
                    name = f"part-{spec.name}.parquet"
                    writer.submit(imp, C.partition_dir(root, C.IMPRESSIONS, dt) / name, _DICT_COLUMNS)
                    writer.submit(
                        truth, C.partition_dir(root / TRUTH_DIR, C.IMPRESSIONS, dt) / name, _DICT_COLUMNS
                    )
                    rows["onboard" if is_onb else C.IMPRESSIONS] += imp.num_rows
                    st = stats[spec.name]
                    st.impressions += len(pl)
                    st.clicks += int(pl[:, 1].sum())
                    seen[spec.name][u] = True
                    if d_idx < n_days - 1:
                        trained[spec.name][u] = True
                    else:
                        test_pl[spec.name], test_users[spec.name] = pl, u
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
        st.oracle_auc = expected_auc(test_pl[name][:, 0])
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


def oracle_auc(out: Path | str, domains: list[str] | None = None, sampled: bool = False) -> dict[str, float]:
    """AUC of the true p_click on each target domain's test-day impressions (main targets by default).

    By default the noise-free AUC (labels taken as Bernoulli(p_click), see expected_auc): the ceiling
    any model can reach on that day. `sampled=True` scores the logged labels instead (what a model's
    test AUC is compared with; noisy on small presets).
    """
    names = domains if domains is not None else read_manifest(out)["targets"]
    result = {}
    for name in names:
        tbl = truth_of_test_day(out, name)
        p = tbl.column(P_CLICK).to_numpy()
        result[name] = auc(tbl.column(C.LABEL).to_numpy(), p) if sampled else expected_auc(p)
    return result


def unshifted_auc(
    out: Path | str, domains: list[str] | None = None, sampled: bool = False
) -> dict[str, float]:
    """Like oracle_auc, scoring with the users' true interests but ignoring the target domain's shift."""
    manifest = read_manifest(out)
    state = latent_state(manifest["preset"], manifest["seed"], manifest["n_targets"])
    names = domains if domains is not None else manifest["targets"]
    result = {}
    for name in names:
        tbl = truth_of_test_day(out, name)
        u = tbl.column(C.USER_ID).to_numpy() - USER_ID_BASE
        i = tbl.column(C.ITEM_ID).to_numpy() - ITEM_ID_BASE
        score = click_logit(state, name, u, i, shifted=False)
        p = tbl.column(P_CLICK).to_numpy()
        result[name] = auc(tbl.column(C.LABEL).to_numpy(), score) if sampled else expected_auc(p, score)
    return result


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
