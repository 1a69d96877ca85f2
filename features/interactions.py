"""Import generic interaction files (explicit ratings or implicit events, with or without times) into the
log contract, under a stated protocol (docs/log-contract.md, "Importing interaction data").

Every reader returns one *standard table*: user (string), item (string), domain (string), rating (float64,
null when implicit), ts (int64 unix seconds, null when the data has no times), pos (int64, the row's order in
its file(s): ties in time keep it). `import_interactions` turns a standard table into a landing zone:

- the source domain's rows become `behaviors` (`rate` with the rating as value; implicit: `--source-behavior`,
  no value); the target domain's rows become `impressions`.
- explicit ratings: one impression per rating, label = rating, task `rating`.
- implicit: each target interaction is one request: label 1 for the item, plus `negatives` items with label 0
  drawn uniformly (seeded) from the target domain's items that exist at the request's time (interacted with
  by anyone in that domain by then; `negatives_from="all"`: every item), never one the user interacted with
  there. A user's last target interaction gets `eval_negatives`
  instead and the `eval_last - 1` before it `val_negatives`: the leave-last-out protocol of sequential
  cross-domain papers (test: 1 + 99 candidates; validation may use fewer to save time).
- no times: every source row at T0 and every target row at T0 + 1 day, so every target row sees the user's
  whole source history ("full history", the cold-start protocol of the MF bridges and the paper's Table 3).
- times: a user's rows at the same second are spread by microseconds in file order, so "before this event"
  is defined for every pair of a user's events (day-level data keeps its day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features import contract as C
from features.importers import MAPPINGS_DIR, RAW_ID, _dense_ids, _write_partitioned, day_strings
from features.io import LANDING_OUTPUT, atomic_dir, write_table

USER, ITEM, DOMAIN, RATING, TS, POS = "user", "item", "domain", "rating", "ts", "pos"
ROLES: tuple[str, ...] = (USER, ITEM, RATING, "timestamp", DOMAIN)
ITEM_SEP = ":"  # raw item ids of per-domain catalogs read <domain>:<item> in _mappings/items.parquet
T0_SECONDS = 946_684_800  # 2000-01-01T00:00Z: the time of untimed source rows (targets one day later)
STANDARD = pa.schema([(USER, pa.string()), (ITEM, pa.string()), (DOMAIN, pa.string()),
                      (RATING, pa.float64()), (TS, pa.int64()), (POS, pa.int64())])


class InteractionImportError(C.ContractError):
    """An interaction file or option that cannot be imported; the message names the file and problem."""


@dataclass(frozen=True)
class Protocol:
    """How interactions become contract rows (module docstring); every random draw uses `seed`."""

    negatives: int = 4  # sampled negatives per implicit training interaction
    eval_negatives: int = 99  # sampled negatives for each of a user's last `eval_last` interactions
    eval_last: int = 2  # validation + test interaction per user (leave-last-out)
    val_negatives: int = 99  # negatives of the evaluation requests before the last (validation: cheaper)
    source_behavior: str = "click"  # behaviour type of implicit source rows
    seed: int = 0
    sample_users: int = 0  # keep a seeded sample of this many users (0: every user)
    negatives_from: str = "available"  # "available": items seen in the domain by the request's time; "all"


@dataclass
class InteractionSummary:
    """What import_interactions wrote."""

    out: Path
    source_domain: str
    target_domain: str
    explicit: bool
    timed: bool
    rows: dict[str, int] = field(default_factory=dict)
    users: int = 0
    overlap_users: int = 0
    categories: int = 0  # title pseudo-categories (0: no titles)


def parse_columns(spec: str) -> dict[str, str]:
    """'user=0,item=1,rating=2' (indices or header names) -> {role: column}; roles from ROLES."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        role, sep, col = part.partition("=")
        if not sep or not col or role not in ROLES:
            raise InteractionImportError(f"--columns: {part!r} is not ROLE=COLUMN with ROLE in {ROLES}")
        out[role] = col
    missing = {USER, ITEM} - out.keys()
    if missing:
        raise InteractionImportError(f"--columns: needs {sorted(missing)} (got {spec!r})")
    return out


def _column(tbl: pa.Table, col: str, path: Path) -> pa.ChunkedArray:
    """A column by header name, or by 0-based index when the file has no header."""
    if col in tbl.column_names:
        return tbl.column(col)
    if col.isdigit() and int(col) < tbl.num_columns:
        return tbl.column(int(col))
    raise InteractionImportError(f"{path}: no column {col!r} (has {tbl.column_names})")


def _seconds(col: pa.ChunkedArray, path: Path) -> pa.Array:
    """Unix seconds of an integer column or an ISO-8601 text column (naive text means UTC)."""
    if pa.types.is_integer(col.type):
        return pc.cast(col, pa.int64()).combine_chunks()
    try:
        text = pc.cast(col, pa.string())
        ts = pc.cast(text, pa.timestamp("s", tz="UTC")) if not pa.types.is_timestamp(col.type) else col
        return pc.cast(pc.cast(ts, pa.timestamp("s", tz="UTC")), pa.int64()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InteractionImportError(f"{path}: timestamp column is neither unix seconds nor ISO 8601: {exc}"
                                     ) from None


def read_interaction_file(path: Path | str, columns: dict[str, str], sep: str = "\t", header: bool = False,
                          domain: str | None = None) -> pa.Table:
    """One delimited file as a standard table; `domain` names the rows' domain when no column does."""
    path = Path(path)
    if not path.is_file():
        raise InteractionImportError(f"{path}: no such file")
    if (DOMAIN in columns) == (domain is not None):
        raise InteractionImportError(f"{path}: give the domain as a column or as a name (one of the two)")
    try:
        tbl = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(autogenerate_column_names=not header),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False if sep == "\t" else '"'),
        )
    except pa.ArrowInvalid as exc:
        raise InteractionImportError(f"{path}: not a {sep!r}-separated file: {exc}") from None
    if not header:  # autogenerated names f0, f1, ...: index them by position
        tbl = tbl.rename_columns([str(i) for i in range(tbl.num_columns)])
    n = tbl.num_rows
    if n == 0:
        raise InteractionImportError(f"{path}: no rows")
    rating = None
    if RATING in columns:
        try:
            rating = pc.cast(_column(tbl, columns[RATING], path), pa.float64())
        except pa.ArrowInvalid:
            raise InteractionImportError(f"{path}: rating column is not numeric") from None
    dom = (_column(tbl, columns[DOMAIN], path) if DOMAIN in columns
           else pa.array(np.full(n, domain, dtype=object), pa.string()))
    out = pa.table({
        USER: pc.cast(_column(tbl, columns[USER], path), pa.string()),
        ITEM: pc.cast(_column(tbl, columns[ITEM], path), pa.string()),
        DOMAIN: pc.cast(dom, pa.string()),
        RATING: rating if rating is not None else pa.nulls(n, pa.float64()),
        TS: _seconds(_column(tbl, columns["timestamp"], path), path) if "timestamp" in columns
        else pa.nulls(n, pa.int64()),
        POS: pa.array(np.arange(n, dtype=np.int64)),
    }, schema=STANDARD)
    for col in (USER, ITEM, DOMAIN):
        if out.column(col).null_count:
            raise InteractionImportError(f"{path}: {out.column(col).null_count} rows without a {col}")
    return out


def concat_standard(tables: list[pa.Table]) -> pa.Table:
    """Several standard tables as one, `pos` renumbered so file order is kept across files."""
    tbl = pa.concat_tables(tables)
    return tbl.set_column(tbl.schema.get_field_index(POS), POS,
                          pa.array(np.arange(tbl.num_rows, dtype=np.int64)))


def _sample_users(tbl: pa.Table, n: int, seed: int) -> pa.Table:
    """The rows of a seeded random sample of n users (all rows when there are no more than n)."""
    users = pc.unique(tbl.column(USER))
    if len(users) <= n:
        return tbl
    keep = users.take(pa.array(np.sort(np.random.default_rng(seed).choice(len(users), n, replace=False))))
    return tbl.filter(pc.is_in(tbl.column(USER), keep))


def _lookup(raw: pa.ChunkedArray | pa.Array, mapping: pa.Table) -> np.ndarray:
    """Dense ids of raw ids through a _dense_ids mapping (vectorised)."""
    return mapping.column("id").to_numpy()[pc.index_in(raw, mapping.column(RAW_ID)).to_numpy()]


def _event_us(tbl: pa.Table, users: np.ndarray, is_source: np.ndarray) -> np.ndarray:
    """Event time (unix microseconds) of every row under the protocol (module docstring)."""
    ts = tbl.column(TS)
    if ts.null_count == len(ts):  # untimed: source at T0, target one day later
        return np.where(is_source, T0_SECONDS, T0_SECONDS + 86_400).astype(np.int64) * 1_000_000
    if ts.null_count:
        raise InteractionImportError(f"{ts.null_count} rows have no timestamp while others have one")
    sec = ts.to_numpy().astype(np.int64)
    order = np.lexsort((tbl.column(POS).to_numpy(), sec, users))  # user, time, file order
    s_u, s_t = users[order], sec[order]
    new = np.ones(len(order), bool)
    new[1:] = (s_u[1:] != s_u[:-1]) | (s_t[1:] != s_t[:-1])
    start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    tie = np.empty(len(order), np.int64)
    tie[order] = np.arange(len(order)) - start  # rank among the user's rows at that second
    if tie.max(initial=0) >= 1_000_000:
        raise InteractionImportError("over a million interactions of one user share one second")
    return sec * 1_000_000 + tie


def available_pool(items: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct items ordered by first appearance, and per row how many of them exist at its time."""
    first = np.full(int(items.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, items, times)
    pool = np.unique(items)
    pool = pool[np.argsort(first[pool], kind="stable")]
    return pool, np.searchsorted(first[pool], times, side="right")


def sample_negatives(rng: np.random.Generator, pool: np.ndarray, owners: np.ndarray, counts: np.ndarray,
                     seen: np.ndarray, avail: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`counts[r]` items of `pool` for request r, uniform, never in the owner's `seen` keys; (request, item).

    seen: sorted int64 keys user * K + item of every (user, item) the user interacted with. Draws that hit a
    seen item are redrawn (a few rounds); the few still colliding after that are dropped.
    avail: (R,) how many leading items of `pool` request r may draw (pool ordered by when items appear);
    None: the whole pool.
    """
    req = np.repeat(np.arange(len(counts)), counts)
    limit = (np.full(len(counts), len(pool)) if avail is None else avail)[req]

    def draw(rows: np.ndarray) -> np.ndarray:
        return pool[(rng.random(len(rows)) * limit[rows]).astype(np.int64)]

    items = draw(np.arange(len(req)))
    k = np.int64(pool.max() + 1)
    for _ in range(10):
        key = owners[req] * k + items
        hit = np.isin(key, seen)
        if not hit.any():
            break
        items[hit] = draw(np.flatnonzero(hit))
    keep = ~np.isin(owners[req] * k + items, seen)
    return req[keep], items[keep]


def import_interactions(
    tbl: pa.Table, source_domain: str, target_domain: str, out: Path | str, protocol: Protocol | None = None,
    item_categories: pa.Table | None = None, shared_item_ids: bool = False,
) -> InteractionSummary:
    """Write the landing zone of standard table `tbl` at `out` (replaced atomically).

    item_categories: optional (item raw id string, category_id int64) table, e.g. title pseudo-categories.
    shared_item_ids: one item id means one item in every domain (Amazon ASINs); else ids are per domain and
    the mapping's raw ids read `<domain>:<item>`.
    """
    protocol = protocol or Protocol()
    out = Path(out)
    if protocol.sample_users:
        tbl = _sample_users(tbl, protocol.sample_users, protocol.seed)
    for name in (source_domain, target_domain):
        C.check_domain_name(name)
    if source_domain == target_domain:
        raise InteractionImportError(f"source and target domain are both {source_domain!r}")
    doms = tbl.column(DOMAIN)
    unknown = pc.unique(doms.filter(pc.invert(pc.is_in(doms, pa.array([source_domain, target_domain])))))
    if len(unknown):
        raise InteractionImportError(f"rows of domains {unknown.to_pylist()[:5]} are neither "
                                     f"--source-domain {source_domain!r} nor --target-domain "
                                     f"{target_domain!r}")
    is_source = pc.equal(doms, source_domain).to_numpy(zero_copy_only=False)
    if is_source.all() or not is_source.any():
        raise InteractionImportError("the source and the target domain each need at least one row")
    n_rated = len(tbl) - tbl.column(RATING).null_count
    if 0 < n_rated < len(tbl):
        raise InteractionImportError(f"{len(tbl) - n_rated} rows have no rating while others have one")
    explicit = n_rated > 0
    # item ids are per domain unless told otherwise: "1630" of books is not "1630" of music
    raw_items = tbl.column(ITEM) if shared_item_ids else pc.binary_join_element_wise(
        tbl.column(DOMAIN), tbl.column(ITEM), ITEM_SEP)
    users_map, items_map = _dense_ids(tbl.column(USER)), _dense_ids(raw_items)
    users = _lookup(tbl.column(USER), users_map)
    items = _lookup(raw_items, items_map)
    when = _event_us(tbl, users, is_source)
    timed = tbl.column(TS).null_count < len(tbl)

    # behaviours: the source domain's rows
    src = np.flatnonzero(is_source)
    behavior = "rate" if explicit else protocol.source_behavior
    behaviors = pa.table({
        C.EVENT_TIME: pa.array(when[src]).cast(C.TIMESTAMP),
        C.DOMAIN: pa.array(np.full(len(src), source_domain, dtype=object), pa.string()),
        C.USER_ID: pa.array(users[src]),
        C.ITEM_ID: pa.array(items[src]),
        C.BEHAVIOR: pa.array(np.full(len(src), behavior, dtype=object), pa.string()),
        C.VALUE: tbl.column(RATING).take(pa.array(src)),
    }, schema=C.SCHEMAS[C.BEHAVIORS])

    tgt = np.flatnonzero(~is_source)
    t_user, t_item, t_when = users[tgt], items[tgt], when[tgt]
    if explicit:
        req_user, req_item, req_when = t_user, t_item, t_when
        labels = tbl.column(RATING).take(pa.array(tgt)).to_numpy()
        req_of_row = np.arange(len(tgt))
    else:
        req_user, req_item, req_when, req_of_row, labels = _implicit_rows(t_user, t_item, t_when, protocol)
    request_id = pc.binary_join_element_wise(
        f"{target_domain}-", pc.cast(pa.array(req_user[req_of_row]), pa.string()), "-",
        pc.cast(pa.array(req_when[req_of_row]), pa.string()), "")
    impressions = pa.table({
        C.EVENT_TIME: pa.array(req_when[req_of_row]).cast(C.TIMESTAMP),
        C.REQUEST_ID: request_id,
        C.DOMAIN: pa.array(np.full(len(req_of_row), target_domain, dtype=object), pa.string()),
        C.USER_ID: pa.array(req_user[req_of_row]),
        C.ITEM_ID: pa.array(req_item),
        C.LABEL: pa.array(labels.astype(np.float64)),
    }, schema=C.SCHEMAS[C.IMPRESSIONS])

    n_items = items_map.num_rows
    category = pa.nulls(n_items, pa.int64())
    n_categories = 0
    if item_categories is not None:
        bare = items_map.column(RAW_ID) if shared_item_ids else pc.list_element(
            pc.split_pattern(items_map.column(RAW_ID), ITEM_SEP, max_splits=1), 1)
        pos = pc.index_in(bare, pc.cast(item_categories.column(0), pa.string()))
        has = pc.is_valid(pos).to_numpy(zero_copy_only=False)
        cats = pc.cast(item_categories.column(1), pa.int64()).to_numpy()
        vals = cats[pc.fill_null(pos, 0).to_numpy()] if len(cats) else np.zeros(n_items, np.int64)
        category = pa.array(vals, pa.int64(), mask=~has)
        n_categories = int(len(np.unique(vals[has])))
    null_i64 = pa.nulls(n_items, pa.int64())
    items_tbl = pa.table({C.ITEM_ID: items_map.column("id"), C.CATEGORY_ID: category, C.BRAND_ID: null_i64,
                          C.SHOP_ID: null_i64, C.PRICE: pa.nulls(n_items, pa.float64())},
                         schema=C.SCHEMAS[C.ITEMS])
    task = C.TASK_RATING if explicit else C.TASK_CTR
    domains = pa.table({C.DOMAIN: [source_domain, target_domain], C.ROLE: [C.ROLE_SOURCE, C.ROLE_TARGET],
                        C.TASK: [task, task], "category": [source_domain, target_domain]})
    with atomic_dir(out, kind=LANDING_OUTPUT) as tmp:
        _write_partitioned(behaviors, day_strings(when[src] // 1_000_000), tmp, C.BEHAVIORS)
        _write_partitioned(impressions, day_strings(req_when[req_of_row] // 1_000_000), tmp, C.IMPRESSIONS)
        write_table(items_tbl, tmp / C.ITEMS / "items.parquet")
        write_table(domains, tmp / C.DOMAINS / "domains.parquet")
        write_table(users_map.rename_columns([RAW_ID, C.USER_ID]), tmp / MAPPINGS_DIR / "users.parquet")
        write_table(items_map.rename_columns([RAW_ID, C.ITEM_ID]), tmp / MAPPINGS_DIR / "items.parquet")
    return InteractionSummary(
        out, source_domain, target_domain, explicit, timed,
        {C.BEHAVIORS: behaviors.num_rows, C.IMPRESSIONS: impressions.num_rows, C.ITEMS: n_items},
        users_map.num_rows, len(np.intersect1d(users[src], t_user)), n_categories,
    )


def _implicit_rows(user: np.ndarray, item: np.ndarray, when: np.ndarray, protocol: Protocol
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Requests of implicit target interactions with sampled negatives.

    Returns per request (R,): user, positive item, time; per impression row (M,): its request, item... as
    (req_user, row_item, req_when, req_of_row, label): the positive first, then its negatives.
    """
    if protocol.negatives_from not in ("available", "all"):
        raise InteractionImportError(f"negatives-from: 'available' or 'all', not {protocol.negatives_from!r}")
    if min(protocol.negatives, protocol.eval_negatives, protocol.eval_last, protocol.val_negatives) < 0:
        raise InteractionImportError("negatives, eval-negatives, val-negatives and eval-last must be >= 0")
    # duplicates of (user, item) in the target domain: one request, the first time
    order = np.lexsort((when, item, user))
    u, i, w = user[order], item[order], when[order]
    first = np.ones(len(u), bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    u, i, w = u[first], i[first], w[first]
    # rank of each request from the user's last backwards (0 = last): the last eval_last get eval negatives
    by_time = np.lexsort((w, u))
    u, i, w = u[by_time], i[by_time], w[by_time]
    grp = np.unique(u, return_inverse=True)[1].ravel()
    n_u = np.bincount(grp)
    last = (np.cumsum(n_u) - 1)[grp]  # index of the user's last request (rows are grouped by user)
    from_end = last - np.arange(len(u))
    counts = np.where(from_end == 0, protocol.eval_negatives,
                      np.where(from_end < protocol.eval_last, protocol.val_negatives, protocol.negatives))
    if protocol.eval_last == 0:
        counts = np.full(len(u), protocol.negatives)
    k = np.int64(i.max() + 1)
    seen = np.unique(u.astype(np.int64) * k + i)
    # the pool in the order items appear (first interaction in the domain): a request draws only from items
    # that exist at its time. Drawing from all items would show training requests items that appear only
    # later, as negatives, and so teach every model that tomorrow's items are unwanted
    pool, avail = available_pool(i, w)
    avail = avail if protocol.negatives_from == "available" else None
    rng = np.random.default_rng(protocol.seed)
    neg_req, neg_item = sample_negatives(rng, pool, u.astype(np.int64), counts, seen, avail)
    req_of_row = np.concatenate([np.arange(len(u)), neg_req])
    row_item = np.concatenate([i, neg_item])
    label = np.concatenate([np.ones(len(u)), np.zeros(len(neg_req))])
    keep = np.lexsort((1 - label, req_of_row))  # each request's positive, then its negatives
    return u, row_item[keep], w, req_of_row[keep], label[keep]
