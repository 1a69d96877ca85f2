"""The simulator's world: presets, domains, and the latent users/items/interests built from (preset, seed).

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

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from features import contract as C

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


