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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from features import contract as C
from features.rule_masks import (
    Check,
    RuleContext,
    domain_is_target,
    domain_known,
    domain_name_ok,
    in_partition,
    in_set,
    item_known,
    label_ctr,
    label_rating,
    non_negative,
    not_future,
    not_null,
    parses,
    price_ok,
    unique,
    value_rating,
)

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


EXACT, AT_LEAST = "exact", "at_least"


@dataclass(frozen=True)
class GxForm:
    """A rule in GX's terms: an expectation class of great_expectations.expectations and its kwargs."""

    expectation: str  # e.g. "ExpectColumnValuesToBeInSet"
    kwargs: Callable[[RuleContext], dict[str, Any]]  # column(s), sets and bounds (from the context)
    counts: str = EXACT  # EXACT: GX's unexpected rows == the mask's; AT_LEAST: GX's >= the mask's
    # only the rows of this task's domains: the batch carries the rule's column as `<rule name>`, null on
    # other rows (GX skips nulls). A row_condition would do the same, but GX's pandas engine runs it as a
    # DataFrame.query that copies the whole batch once per metric of the expectation
    task: str | None = None


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


_NAME_FORM = GxForm("ExpectColumnValuesToMatchRegex", _kw(column=C.DOMAIN, regex=C.DOMAIN_NAME_PATTERN))


def row_rules(table: str) -> list[RowRule]:
    """Every rule of a contract table, in evaluation order (a `needs_others` rule comes last)."""
    level: Level = TABLE if table == C.DOMAINS else ROW  # a bad domains table fails the run
    rules: list[RowRule] = []
    for col in C.columns(table):
        rules.append(RowRule(f"parses:{col}", f"{col} parses as the contract type", parses(col), level))
    for col in C.KEY_COLUMNS[table]:
        # GX sees an unparsable value as null too; the mask leaves that row to parses:<col>
        form = GxForm("ExpectColumnValuesToNotBeNull", _kw(column=col), AT_LEAST)
        rules.append(
            RowRule(f"not_null:{col}", f"key column {col} is not null", not_null(col), level, gx=form)
        )
    for col in _ID_COLUMNS[table]:
        form = GxForm("ExpectColumnValuesToBeBetween", _kw(column=col, min_value=0))
        rules.append(
            RowRule(
                f"non_negative:{col}", f"id {col} is a non-negative integer", non_negative(col), level,
                gx=form,
            )
        )
    if table in C.EVENT_TABLES:
        rules += [
            # GX's pandas regex runs in Python per value (~0.8 s per 1M rows): computed on event
            # tables; the domains table it guards is checked by GX's regex expectation itself
            RowRule("domain_name", f"domain matches {C.DOMAIN_NAME_PATTERN}", domain_name_ok(C.DOMAIN)),
            RowRule("domain_known", "domain is a row of the domains table", domain_known,
                    gx=GxForm("ExpectColumnValuesToBeInSet",
                              lambda ctx: {"column": C.DOMAIN, "value_set": sorted(ctx.domain_tasks)})),
            RowRule(
                "event_time_in_partition", "event_time lies within its dt partition's UTC day", in_partition,
                gx=GxForm("ExpectColumnValuesToBeBetween", lambda ctx: {
                    "column": C.EVENT_TIME, "min_value": ctx.day_start, "max_value": ctx.day_end,
                    "strict_max": True}),
            ),
            RowRule("event_time_not_future", "event_time is not in the future", not_future,
                    gx=GxForm("ExpectColumnValuesToBeBetween",
                              lambda ctx: {"column": C.EVENT_TIME, "max_value": ctx.now})),
            # the items table has ~10^5 rows: as a GX value set it would fill the Data Docs page
            RowRule("item_known", "item_id is an accepted row of the items table", item_known),
        ]
    if table == C.IMPRESSIONS:
        rules += [
            RowRule(
                "domain_is_target",
                "impressions are target-domain rows (a source domain's feedback is a behaviour)",
                domain_is_target,
                gx=GxForm("ExpectColumnValuesToNotBeInSet", lambda ctx: {
                    "column": C.DOMAIN,
                    "value_set": sorted(d for d, r in ctx.domain_roles.items() if r != C.ROLE_TARGET)}),
            ),
            RowRule("label_ctr_binary", "label is 0 or 1 in ctr domains", label_ctr,
                    gx=GxForm("ExpectColumnValuesToBeInSet", _kw(column=C.LABEL, value_set=[0.0, 1.0]),
                              task=C.TASK_CTR)),
            RowRule(
                "label_rating_range",
                f"label is within [{C.RATING_MIN}, {C.RATING_MAX}] in rating domains",
                label_rating,
                gx=GxForm("ExpectColumnValuesToBeBetween", _kw(
                    column=C.LABEL, min_value=C.RATING_MIN, max_value=C.RATING_MAX), task=C.TASK_RATING),
            ),
            RowRule(
                "unique_request_item",
                "no duplicated (request_id, item_id): the first copy is kept",
                unique(UNIQUE_KEYS[C.IMPRESSIONS]),
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
                in_set(C.BEHAVIOR, C.BEHAVIOR_TYPES),
                gx=GxForm(
                    "ExpectColumnValuesToBeInSet", _kw(column=C.BEHAVIOR, value_set=list(C.BEHAVIOR_TYPES))
                ),
            ),
            # a rate without a value fails too: GX's map expectations skip nulls, so it is computed
            RowRule(
                "rate_value_in_range", "rate behaviours carry a value within the rating range", value_rating
            ),
        ]
    elif table == C.ITEMS:
        rules += [
            # NaN and inf fail too: pandas reads NaN as missing, so it is computed
            RowRule("price_non_negative", "price is finite and >= 0 when present", price_ok),
            RowRule(
                "unique_item_id",
                "item_id is unique: the first row is kept",
                unique(UNIQUE_KEYS[C.ITEMS]),
                needs_others=True,
                gx=GxForm("ExpectColumnValuesToBeUnique", _kw(column=C.ITEM_ID), AT_LEAST),
            ),
        ]
    elif table == C.DOMAINS:
        rules += [
            RowRule(
                "domain_name", f"domain matches {C.DOMAIN_NAME_PATTERN}", domain_name_ok(C.DOMAIN), TABLE,
                gx=_NAME_FORM,
            ),
            RowRule("role_in_set", f"role is one of {list(C.ROLES)}", in_set(C.ROLE, C.ROLES), TABLE,
                    gx=GxForm("ExpectColumnValuesToBeInSet", _kw(column=C.ROLE, value_set=list(C.ROLES)))),
            RowRule("task_in_set", f"task is one of {list(C.TASKS)}", in_set(C.TASK, C.TASKS), TABLE,
                    gx=GxForm("ExpectColumnValuesToBeInSet", _kw(column=C.TASK, value_set=list(C.TASKS)))),
            RowRule(
                "unique_domain", "domain is unique", unique(UNIQUE_KEYS[C.DOMAINS]), TABLE,
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
        if rule.gx is not None:  # Data Docs render GX's own words; the notes name the rule
            kind = getattr(gxe, rule.gx.expectation)
            kwargs = rule.gx.kwargs(ctx)
            notes = f"{rule.level}-level rule `{rule.name}`: {rule.description}"
            if rule.gx.task is not None:  # the column on the task's rows only (GxForm.task)
                notes += f" (`{rule.name}`: `{kwargs['column']}` on {rule.gx.task} rows, null elsewhere)"
                kwargs["column"] = rule.name
            suite.add_expectation(kind(**kwargs, notes=notes, meta=meta))
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
