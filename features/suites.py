"""Expectation suites as code: one definition per data-quality rule, feeding both the Great
Expectations suite (which decides whether a rule failed) and a vectorised row mask (which rows).

A `RowRule` states itself in GX's own terms on the data's columns (`GxForm`: e.g.
ExpectColumnValuesToNotBeNull on user_id, ExpectColumnValuesToBeBetween on event_time with the
day's bounds, ExpectCompoundColumnsToBeUnique on (request_id, item_id)) and computes the same
rule as a boolean pass-mask with pyarrow/numpy. GX's unexpected-row count is checked against the
mask's (`EXACT`: equal; `AT_LEAST`: GX also counts rows the mask leaves to another rule, e.g. an
unparsable id is null to GX but reported as `parses:`). Rules GX has no column expectation for
(a raw value that does not parse, an item missing from a 100k-row items table, a rate without a
value) are computed here and GX checks their failure column ("max is 0"). Adding a rule = adding
one `RowRule` to `row_rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C

if TYPE_CHECKING:  # GX is heavy to import; only type checkers need it here
    import great_expectations as gx

Level = Literal["row", "table"]
ROW: Level = "row"
TABLE: Level = "table"

# Names of the table-level checks (not RowRules): they appear in ValidationFailed messages,
# reports and (for the row count) the GX suite.
FILE_READABLE = "file_readable"
FILE_NOT_EMPTY = "file_not_empty"
COLUMNS_MATCH_CONTRACT = "columns_match_contract"
COLUMN_TYPES_MATCH_CONTRACT = "column_types_match_contract"
TABLE_PRESENT = "table_present"
ROW_COUNT_IN_BOUNDS = "row_count_in_bounds"

# Table of rule meta keys in GX expectations: how a GX result is mapped back to a rule.
META_RULE = "dacdr_rule"
# the key each table's uniqueness rule keeps the first copy of (rows sharing one must be judged together)
UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    C.IMPRESSIONS: (C.REQUEST_ID, C.ITEM_ID),
    C.ITEMS: (C.ITEM_ID,),
    C.DOMAINS: (C.DOMAIN,),
}
META_LEVEL = "dacdr_level"


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
EXACT, AT_LEAST = "exact", "at_least"


@dataclass(frozen=True)
class GxForm:
    """A rule in GX's terms: an expectation class of great_expectations.expectations and its kwargs."""

    expectation: str  # e.g. "ExpectColumnValuesToBeInSet"
    kwargs: Callable[[RuleContext], dict[str, Any]]  # column(s), sets and bounds (from the context)
    counts: str = EXACT  # EXACT: GX's unexpected rows == the mask's; AT_LEAST: GX's >= the mask's


@dataclass(frozen=True)
class RowRule:
    """One data-quality rule: a vectorised pass-mask plus the words GX and the docs show for it."""

    name: str  # also the quarantine reason and the GX mask column
    description: str
    check: Check  # (batch, ctx) -> bool ndarray, True = the row passes
    level: Level = ROW  # "table": any failing row fails the whole run
    needs_others: bool = False  # evaluated last, over rows that passed every other rule
    gx: GxForm | None = None  # None: GX checks the rule's computed failure column


@dataclass(frozen=True)
class CountBounds:
    """Allowed row count of a day's table: [low * median, high * median] of previous accepted days."""

    low: float = 0.2
    high: float = 5.0
    window: int = 7  # how many previous accepted days make the median


# ---------------------------------------------------------------------------------------------
# mask helpers (all vectorised; nulls pass every rule except the not-null and parse rules, so a
# null key is reported once, by the rule that is about it)
# ---------------------------------------------------------------------------------------------


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A pyarrow boolean result as a numpy bool array, nulls counted as passing."""
    return np.asarray(pc.fill_null(mask, True).to_numpy(zero_copy_only=False), dtype=bool)


def _not_null(col: str) -> Check:
    """Rows whose `col` is present (an unparsable value is reported by its parse rule instead)."""

    def check(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
        present = np.asarray(tbl.column(col).is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        bad_parse = ctx.unparsable.get(col)
        return present if bad_parse is None else present | bad_parse

    return check


def _parses(col: str) -> Check:
    """Rows whose raw `col` value parsed to the contract type (always true for typed parquet)."""

    def check(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
        bad_parse = ctx.unparsable.get(col)
        return np.ones(tbl.num_rows, bool) if bad_parse is None else ~bad_parse

    return check


def _non_negative(col: str) -> Check:
    """Rows whose id `col` is >= 0."""
    return lambda tbl, ctx: _np(pc.greater_equal(tbl.column(col), 0))


def _in_set(col: str, values: tuple[str, ...]) -> Check:
    """Rows whose `col` is one of `values`."""
    value_set = pa.array(list(values), pa.string())
    return lambda tbl, ctx: _np(
        pc.or_(pc.is_in(tbl.column(col), value_set=value_set), tbl.column(col).is_null())
    )


def _domain_name_ok(col: str) -> Check:
    """Rows whose domain name matches contract.DOMAIN_NAME_PATTERN."""
    return lambda tbl, ctx: _np(pc.match_substring_regex(tbl.column(col), C.DOMAIN_NAME_PATTERN))


def _domain_known(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose domain is a row of the (validated) domains table."""
    known = pa.array(sorted(ctx.domain_tasks), pa.string())
    col = tbl.column(C.DOMAIN)
    return _np(pc.or_(pc.is_in(col, value_set=known), col.is_null()))


def _domains_with_task(ctx: RuleContext, task: str) -> pa.Array:
    """The known domains whose task is `task`."""
    return pa.array(sorted(d for d, t in ctx.domain_tasks.items() if t == task), pa.string())


def _domain_is_target(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Impression rows belong to a target domain (unknown domains are domain_known's to report)."""
    others = pa.array(sorted(d for d, r in ctx.domain_roles.items() if r != C.ROLE_TARGET), pa.string())
    return _np(pc.invert(pc.is_in(tbl.column(C.DOMAIN), value_set=others)))


def _label_ctr(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows of ctr domains have label 0 or 1 (a null label is not_null:label's to report)."""
    in_ctr = pc.is_in(tbl.column(C.DOMAIN), value_set=_domains_with_task(ctx, C.TASK_CTR))
    label = tbl.column(C.LABEL)
    # is_in is false, not null, for a null label: without the is_null term it failed here too
    binary = pc.or_(pc.is_in(label, value_set=pa.array([0.0, 1.0])), label.is_null())
    return _np(pc.or_(pc.invert(in_ctr), binary))


def _label_rating(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows of rating domains have RATING_MIN <= label <= RATING_MAX."""
    in_rating = pc.is_in(tbl.column(C.DOMAIN), value_set=_domains_with_task(ctx, C.TASK_RATING))
    label = tbl.column(C.LABEL)
    in_range = pc.and_(pc.greater_equal(label, C.RATING_MIN), pc.less_equal(label, C.RATING_MAX))
    return _np(pc.or_(pc.invert(in_rating), in_range))


def _in_partition(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose event_time lies in [dt 00:00, dt+1 00:00) UTC."""
    t = tbl.column(C.EVENT_TIME)
    lo = pa.scalar(ctx.day_start, C.TIMESTAMP)
    hi = pa.scalar(ctx.day_end, C.TIMESTAMP)
    return _np(pc.and_(pc.greater_equal(t, lo), pc.less(t, hi)))


def _not_future(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose event_time is not after `now`."""
    return _np(pc.less_equal(tbl.column(C.EVENT_TIME), pa.scalar(ctx.now, C.TIMESTAMP)))


def _item_known(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Rows whose item_id is an accepted row of the items table."""
    col = tbl.column(C.ITEM_ID)
    return _np(pc.or_(pc.is_in(col, value_set=ctx.item_ids), col.is_null()))


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


def _unique(cols: tuple[str, ...]) -> Check:
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


def _value_rating(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """`rate` behaviours carry a value within the rating range."""
    is_rate = pc.equal(tbl.column(C.BEHAVIOR), "rate")
    v = tbl.column(C.VALUE)
    in_range = pc.and_(pc.greater_equal(v, C.RATING_MIN), pc.less_equal(v, C.RATING_MAX))
    return _np(pc.or_(pc.invert(is_rate), pc.fill_null(in_range, False)))


def _price_ok(tbl: pa.Table, ctx: RuleContext) -> np.ndarray:
    """Item prices are finite and >= 0 when present."""
    p = tbl.column(C.PRICE)
    return _np(pc.and_(pc.greater_equal(p, 0.0), pc.is_finite(p)))


# ---------------------------------------------------------------------------------------------
# the suites
# ---------------------------------------------------------------------------------------------

_ID_COLUMNS: dict[str, tuple[str, ...]] = {
    C.IMPRESSIONS: (C.USER_ID, C.ITEM_ID),
    C.BEHAVIORS: (C.USER_ID, C.ITEM_ID),
    C.ITEMS: (C.ITEM_ID, *C.SIDE_INFO),
    C.DOMAINS: (),
}


def _kw(**kwargs: Any) -> Callable[[RuleContext], dict[str, Any]]:
    """GX kwargs that do not depend on the context."""
    return lambda ctx: dict(kwargs)


def _in_domains(ctx: RuleContext, task: str) -> dict[str, Any]:
    """A GX row condition selecting the rows of the known domains whose task is `task`."""
    names = sorted(d for d, t in ctx.domain_tasks.items() if t == task)
    return {"row_condition": f"{C.DOMAIN} in {names!r}", "condition_parser": "pandas"}


_NAME_FORM = GxForm("ExpectColumnValuesToMatchRegex", _kw(column=C.DOMAIN, regex=C.DOMAIN_NAME_PATTERN))


def row_rules(table: str) -> list[RowRule]:
    """Every rule of a contract table, in evaluation order (a `needs_others` rule comes last)."""
    level: Level = TABLE if table == C.DOMAINS else ROW  # a bad domains table fails the run
    rules: list[RowRule] = []
    for col in C.columns(table):
        rules.append(RowRule(f"parses:{col}", f"{col} parses as the contract type", _parses(col), level))
    for col in C.KEY_COLUMNS[table]:
        # GX sees an unparsable value as null too; the mask leaves that row to parses:<col>
        form = GxForm("ExpectColumnValuesToNotBeNull", _kw(column=col), AT_LEAST)
        rules.append(
            RowRule(f"not_null:{col}", f"key column {col} is not null", _not_null(col), level, gx=form)
        )
    for col in _ID_COLUMNS[table]:
        form = GxForm("ExpectColumnValuesToBeBetween", _kw(column=col, min_value=0))
        rules.append(
            RowRule(
                f"non_negative:{col}", f"id {col} is a non-negative integer", _non_negative(col), level,
                gx=form,
            )
        )
    if table in C.EVENT_TABLES:
        rules += [
            RowRule("domain_name", f"domain matches {C.DOMAIN_NAME_PATTERN}", _domain_name_ok(C.DOMAIN),
                    gx=_NAME_FORM),
            RowRule("domain_known", "domain is a row of the domains table", _domain_known,
                    gx=GxForm("ExpectColumnValuesToBeInSet",
                              lambda ctx: {"column": C.DOMAIN, "value_set": sorted(ctx.domain_tasks)})),
            RowRule(
                "event_time_in_partition", "event_time lies within its dt partition's UTC day", _in_partition,
                gx=GxForm("ExpectColumnValuesToBeBetween", lambda ctx: {
                    "column": C.EVENT_TIME, "min_value": ctx.day_start, "max_value": ctx.day_end,
                    "strict_max": True}),
            ),
            RowRule("event_time_not_future", "event_time is not in the future", _not_future,
                    gx=GxForm("ExpectColumnValuesToBeBetween",
                              lambda ctx: {"column": C.EVENT_TIME, "max_value": ctx.now})),
            # the items table has ~10^5 rows: as a GX value set it would fill the Data Docs page
            RowRule("item_known", "item_id is an accepted row of the items table", _item_known),
        ]
    if table == C.IMPRESSIONS:
        rules += [
            RowRule(
                "domain_is_target",
                "impressions are target-domain rows (a source domain's feedback is a behaviour)",
                _domain_is_target,
                gx=GxForm("ExpectColumnValuesToNotBeInSet", lambda ctx: {
                    "column": C.DOMAIN,
                    "value_set": sorted(d for d, r in ctx.domain_roles.items() if r != C.ROLE_TARGET)}),
            ),
            RowRule("label_ctr_binary", "label is 0 or 1 in ctr domains", _label_ctr,
                    gx=GxForm("ExpectColumnValuesToBeInSet", lambda ctx: {
                        "column": C.LABEL, "value_set": [0.0, 1.0], **_in_domains(ctx, C.TASK_CTR)})),
            RowRule(
                "label_rating_range",
                f"label is within [{C.RATING_MIN}, {C.RATING_MAX}] in rating domains",
                _label_rating,
                gx=GxForm("ExpectColumnValuesToBeBetween", lambda ctx: {
                    "column": C.LABEL, "min_value": C.RATING_MIN, "max_value": C.RATING_MAX,
                    **_in_domains(ctx, C.TASK_RATING)}),
            ),
            RowRule(
                "unique_request_item",
                "no duplicated (request_id, item_id): the first copy is kept",
                _unique(UNIQUE_KEYS[C.IMPRESSIONS]),
                needs_others=True,
                # GX counts every copy (the first one too) over all rows; the mask, later copies only
                gx=GxForm("ExpectCompoundColumnsToBeUnique",
                          _kw(column_list=list(UNIQUE_KEYS[C.IMPRESSIONS])), AT_LEAST),
            ),
        ]
    elif table == C.BEHAVIORS:
        rules += [
            RowRule(
                "behavior_in_set",
                f"behavior is one of {list(C.BEHAVIOR_TYPES)}",
                _in_set(C.BEHAVIOR, C.BEHAVIOR_TYPES),
                gx=GxForm(
                    "ExpectColumnValuesToBeInSet", _kw(column=C.BEHAVIOR, value_set=list(C.BEHAVIOR_TYPES))
                ),
            ),
            # a rate without a value fails too: GX's map expectations skip nulls, so it is computed
            RowRule(
                "rate_value_in_range", "rate behaviours carry a value within the rating range", _value_rating
            ),
        ]
    elif table == C.ITEMS:
        rules += [
            # NaN and inf fail too: pandas reads NaN as missing, so it is computed
            RowRule("price_non_negative", "price is finite and >= 0 when present", _price_ok),
            RowRule(
                "unique_item_id",
                "item_id is unique: the first row is kept",
                _unique(UNIQUE_KEYS[C.ITEMS]),
                needs_others=True,
                gx=GxForm("ExpectColumnValuesToBeUnique", _kw(column=C.ITEM_ID), AT_LEAST),
            ),
        ]
    elif table == C.DOMAINS:
        rules += [
            RowRule(
                "domain_name", f"domain matches {C.DOMAIN_NAME_PATTERN}", _domain_name_ok(C.DOMAIN), TABLE,
                gx=_NAME_FORM,
            ),
            RowRule("role_in_set", f"role is one of {list(C.ROLES)}", _in_set(C.ROLE, C.ROLES), TABLE,
                    gx=GxForm("ExpectColumnValuesToBeInSet", _kw(column=C.ROLE, value_set=list(C.ROLES)))),
            RowRule("task_in_set", f"task is one of {list(C.TASKS)}", _in_set(C.TASK, C.TASKS), TABLE,
                    gx=GxForm("ExpectColumnValuesToBeInSet", _kw(column=C.TASK, value_set=list(C.TASKS)))),
            RowRule(
                "unique_domain", "domain is unique", _unique(UNIQUE_KEYS[C.DOMAINS]), TABLE,
                needs_others=True,
                gx=GxForm("ExpectColumnValuesToBeUnique", _kw(column=C.DOMAIN), AT_LEAST),
            ),
        ]
    return rules


def evaluate_rules(tbl: pa.Table, rules: list[RowRule], ctx: RuleContext) -> dict[str, np.ndarray]:
    """Each rule's pass-mask over `tbl` (rules flagged `needs_others` see the others' verdict)."""
    masks: dict[str, np.ndarray] = {}
    for rule in rules:
        if rule.needs_others:
            passed = np.logical_and.reduce(list(masks.values())) if masks else np.ones(tbl.num_rows, bool)
            masks[rule.name] = rule.check(tbl, replace(ctx, passed_others=passed))
        else:
            masks[rule.name] = rule.check(tbl, ctx)
    return masks


def count_limits(history: list[int], bounds: CountBounds) -> tuple[int, int | None]:
    """(min, max) allowed rows given previous accepted days' counts (newest last); 1..inf without history."""
    recent = history[-bounds.window :] if bounds.window > 0 else []
    if not recent:
        return 1, None
    median = float(np.median(recent))
    return max(1, int(np.ceil(bounds.low * median))), int(np.floor(bounds.high * median))


def build_suite(
    table: str, rules: list[RowRule], limits: tuple[int, int | None] | None, ctx: RuleContext | None = None
) -> gx.ExpectationSuite:
    """A table's GX suite: each rule on the data's columns (or its failure column); row-count bounds."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    ctx = ctx or RuleContext(dt="", day_start=datetime.min, day_end=datetime.max, now=datetime.max)
    suite = gx.ExpectationSuite(name=f"dacdr.{table}")
    for rule in rules:
        meta = {META_RULE: rule.name, META_LEVEL: rule.level}
        if rule.gx is not None:
            kind = getattr(gxe, rule.gx.expectation)
            description = f"{rule.level}-level `{rule.name}`: {rule.description}"
            suite.add_expectation(kind(**rule.gx.kwargs(ctx), description=description, meta=meta))
            continue
        # computed here: the batch column `rule.name` holds 1 where a row fails, "max is 0" = none fails
        suite.add_expectation(
            gxe.ExpectColumnMaxToBeBetween(
                column=rule.name,
                max_value=0,
                description=f"{rule.level}-level `{rule.name}`: {rule.description} "
                "(computed; 1 on failing rows)",
                meta=meta,
            )
        )
    if limits is not None:
        lo, hi = limits
        suite.add_expectation(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=lo,
                max_value=hi,
                description="table-level: row count within bounds of the previous accepted days",
                meta={META_RULE: ROW_COUNT_IN_BOUNDS, META_LEVEL: TABLE},
            )
        )
    return suite
