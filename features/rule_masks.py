"""The row rules as vectorised pass-masks (pyarrow/numpy): which rows of a batch fail each rule.

features.suites pairs each mask with its GX expectation; the context (`RuleContext`) carries
what a rule needs beyond the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C


@dataclass(frozen=True)
class RuleContext:
    """What rules need beyond the batch: the day, the clock and the validated dimension tables."""

    dt: str
    day_start: datetime
    day_end: datetime  # exclusive
    now: datetime
    domain_tasks: dict[str, str] = field(default_factory=dict)  # known domain -> task
    domain_roles: dict[str, str] = field(default_factory=dict)  # known domain -> role
    item_ids: pa.Array = field(default_factory=lambda: pa.array([], pa.int64()))
    # per column: True where the raw value was present but could not be parsed to the contract type
    unparsable: dict[str, np.ndarray] = field(default_factory=dict)
    # rows passing every rule evaluated before a `needs_others` rule (set by evaluate_rules)
    passed_others: np.ndarray | None = None


Check = Callable[[pa.Table, RuleContext], np.ndarray]


# ---------------------------------------------------------------------------------------------
# mask helpers (all vectorised; nulls pass every rule except the not-null and parse rules, so a
# null key is reported once, by the rule that is about it)
# ---------------------------------------------------------------------------------------------


def _passes(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A pyarrow boolean result as a numpy bool array, nulls counted as passing."""
    return np.asarray(pc.fill_null(mask, True).to_numpy(zero_copy_only=False), dtype=bool)


def not_null(col: str) -> Check:
    """Rows whose `col` is present (an unparsable value is reported by its parse rule instead)."""

    def check(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
        present = np.asarray(tbl.column(col).is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        bad_parse = ctx.unparsable.get(col)
        return present if bad_parse is None else present | bad_parse

    return check


def parses(col: str) -> Check:
    """Rows whose raw `col` value parsed to the contract type (always true for typed parquet)."""

    def check(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
        bad_parse = ctx.unparsable.get(col)
        return np.ones(tbl.num_rows, bool) if bad_parse is None else ~bad_parse

    return check


def non_negative(col: str) -> Check:
    """Rows whose id `col` is >= 0."""
    return lambda tbl, ctx: _passes(pc.greater_equal(tbl.column(col), 0))


def in_set(col: str, values: tuple[str, ...]) -> Check:
    """Rows whose `col` is one of `values`."""
    value_set = pa.array(list(values), pa.string())
    return lambda tbl, ctx: _passes(
        pc.or_(pc.is_in(tbl.column(col), value_set=value_set), tbl.column(col).is_null())
    )


def domain_name_ok(col: str) -> Check:
    """Rows whose domain name matches contract.DOMAIN_NAME_PATTERN."""
    return lambda tbl, ctx: _passes(pc.match_substring_regex(tbl.column(col), C.DOMAIN_NAME_PATTERN))


def domain_known(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose domain is a row of the (validated) domains table."""
    known = pa.array(sorted(ctx.domain_tasks), pa.string())
    col = tbl.column(C.DOMAIN)
    return _passes(pc.or_(pc.is_in(col, value_set=known), col.is_null()))


def _domains_with_task(ctx: RuleContext, task: str) -> pa.Array:
    """The known domains whose task is `task`."""
    return pa.array(sorted(d for d, t in ctx.domain_tasks.items() if t == task), pa.string())


def of_task(tbl: pa.Table, ctx: RuleContext, task: str) -> pa.ChunkedArray:
    """Rows of the known domains whose task is `task` (what a task's label rule looks at)."""
    return pc.is_in(tbl.column(C.DOMAIN), value_set=_domains_with_task(ctx, task))


def task_rows(tbl: pa.Table, ctx: RuleContext, column: str, task: str) -> pa.ChunkedArray:
    """`column` on the rows of `task`'s domains, null on every other row (GX skips nulls)."""
    null = pa.scalar(None, tbl.schema.field(column).type)
    return pc.if_else(of_task(tbl, ctx, task), tbl.column(column), null)


def domain_is_target(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Impression rows belong to a target domain (unknown domains are domain_known's to report)."""
    others = pa.array(sorted(d for d, r in ctx.domain_roles.items() if r != C.ROLE_TARGET), pa.string())
    return _passes(pc.invert(pc.is_in(tbl.column(C.DOMAIN), value_set=others)))


def label_ctr(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows of ctr domains have label 0 or 1 (a null label is not_null:label's to report)."""
    in_ctr = of_task(tbl, ctx, C.TASK_CTR)
    label = tbl.column(C.LABEL)
    # is_in is false, not null, for a null label: without the is_null term it failed here too
    binary = pc.or_(pc.is_in(label, value_set=pa.array([0.0, 1.0])), label.is_null())
    return _passes(pc.or_(pc.invert(in_ctr), binary))


def label_rating(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows of rating domains have RATING_MIN <= label <= RATING_MAX."""
    in_rating = of_task(tbl, ctx, C.TASK_RATING)
    label = tbl.column(C.LABEL)
    in_range = pc.and_(pc.greater_equal(label, C.RATING_MIN), pc.less_equal(label, C.RATING_MAX))
    return _passes(pc.or_(pc.invert(in_rating), in_range))


def in_partition(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose event_time lies in [dt 00:00, dt+1 00:00) UTC."""
    t = tbl.column(C.EVENT_TIME)
    lo = pa.scalar(ctx.day_start, C.TIMESTAMP)
    hi = pa.scalar(ctx.day_end, C.TIMESTAMP)
    return _passes(pc.and_(pc.greater_equal(t, lo), pc.less(t, hi)))


def not_future(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose event_time is not after `now`."""
    return _passes(pc.less_equal(tbl.column(C.EVENT_TIME), pa.scalar(ctx.now, C.TIMESTAMP)))


def item_known(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose item_id is an accepted row of the items table."""
    col = tbl.column(C.ITEM_ID)
    return _passes(pc.or_(pc.is_in(col, value_set=ctx.item_ids), col.is_null()))


def _key_codes(tbl: pa.Table, cols: tuple[str, ...]) -> np.ndarray:
    """One int64 code per row, equal exactly when the rows' `cols` are equal (dictionary codes)."""
    key = np.zeros(tbl.num_rows, np.int64)
    card = 1
    for col in cols:
        enc = pc.dictionary_encode(tbl.column(col), null_encoding="encode").combine_chunks()
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        n = max(len(enc.dictionary), 1)
        if card * n >= 2**62:  # re-number the combined key so the next product cannot overflow
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            card = int(key.max()) + 1 if len(key) else 1
        key, card = key * n + codes, card * n
    return key


def unique(cols: tuple[str, ...]) -> Check:
    """Keep the first row of each `cols` key among rows passing every other rule; later copies fail."""

    def check(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
        n = tbl.num_rows
        eligible = np.ones(n, bool) if ctx.passed_others is None else ctx.passed_others
        idx = np.flatnonzero(eligible)
        sub = tbl.select(list(cols))
        if len(idx) < n:
            sub = sub.take(pa.array(idx))
        # np.unique sorts stably with return_index, so it returns each key's first occurrence;
        # ~4x faster than a pyarrow group_by on a (string, int) key at 10M rows
        _, first = np.unique(_key_codes(sub, cols), return_index=True)
        ok = ~eligible  # rows failing other rules are reported there, not as duplicates
        ok[idx[first]] = True
        return ok

    return check


def value_rating(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """`rate` behaviours carry a value within the rating range."""
    is_rate = pc.equal(tbl.column(C.BEHAVIOR), "rate")
    v = tbl.column(C.VALUE)
    in_range = pc.and_(pc.greater_equal(v, C.RATING_MIN), pc.less_equal(v, C.RATING_MAX))
    return _passes(pc.or_(pc.invert(is_rate), pc.fill_null(in_range, False)))


def price_ok(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Item prices are finite and >= 0 when present."""
    p = tbl.column(C.PRICE)
    return _passes(pc.and_(pc.greater_equal(p, 0.0), pc.is_finite(p)))
