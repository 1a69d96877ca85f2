"""The raw log contract: table names, columns, types and landing-zone layout (single source of truth)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

# ---------------------------------------------------------------------------------------------
# Tables and columns. Every module imports these names; nobody spells a column name by hand.
# ---------------------------------------------------------------------------------------------

IMPRESSIONS = "impressions"
BEHAVIORS = "behaviors"
ITEMS = "items"
DOMAINS = "domains"
TABLES: tuple[str, ...] = (IMPRESSIONS, BEHAVIORS, ITEMS, DOMAINS)
# Tables partitioned by day (dt=YYYY-MM-DD); items and domains are dimension tables that may be
# partitioned or not (a reader takes every file under the table folder).
EVENT_TABLES: tuple[str, ...] = (IMPRESSIONS, BEHAVIORS)

# column names
EVENT_TIME = "event_time"
REQUEST_ID = "request_id"
DOMAIN = "domain"
USER_ID = "user_id"
ITEM_ID = "item_id"
LABEL = "label"
BEHAVIOR = "behavior"
VALUE = "value"
CATEGORY_ID = "category_id"
BRAND_ID = "brand_id"
SHOP_ID = "shop_id"
PRICE = "price"
ROLE = "role"
TASK = "task"

# behaviour types, in the order models see them (rich to sparse; `rate` is the ratings source)
BEHAVIOR_TYPES: tuple[str, ...] = ("browse", "click", "cart", "purchase", "rate")
ROLES: tuple[str, ...] = ("source", "target")
ROLE_SOURCE, ROLE_TARGET = ROLES
TASKS: tuple[str, ...] = ("ctr", "rating")
TASK_CTR, TASK_RATING = TASKS
# item side-info columns that travel with every item (aligned side-info sequences use them)
SIDE_INFO: tuple[str, ...] = (CATEGORY_ID, BRAND_ID, SHOP_ID)

DOMAIN_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_DOMAIN_RE = re.compile(DOMAIN_NAME_PATTERN)
# rating domains: labels must lie in this closed range (Amazon stars)
RATING_MIN, RATING_MAX = 1.0, 5.0

TIMESTAMP = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    IMPRESSIONS: pa.schema(
        [
            pa.field(EVENT_TIME, TIMESTAMP, nullable=False),
            pa.field(REQUEST_ID, pa.string(), nullable=False),
            pa.field(DOMAIN, pa.string(), nullable=False),
            pa.field(USER_ID, pa.int64(), nullable=False),
            pa.field(ITEM_ID, pa.int64(), nullable=False),
            pa.field(LABEL, pa.float64(), nullable=False),
        ]
    ),
    BEHAVIORS: pa.schema(
        [
            pa.field(EVENT_TIME, TIMESTAMP, nullable=False),
            pa.field(DOMAIN, pa.string(), nullable=False),
            pa.field(USER_ID, pa.int64(), nullable=False),
            pa.field(ITEM_ID, pa.int64(), nullable=False),
            pa.field(BEHAVIOR, pa.string(), nullable=False),
            pa.field(VALUE, pa.float64(), nullable=True),
        ]
    ),
    ITEMS: pa.schema(
        [
            pa.field(ITEM_ID, pa.int64(), nullable=False),
            pa.field(CATEGORY_ID, pa.int64(), nullable=True),
            pa.field(BRAND_ID, pa.int64(), nullable=True),
            pa.field(SHOP_ID, pa.int64(), nullable=True),
            pa.field(PRICE, pa.float64(), nullable=True),
        ]
    ),
    # plus any number of extra string columns: the domain features e_d
    DOMAINS: pa.schema(
        [
            pa.field(DOMAIN, pa.string(), nullable=False),
            pa.field(ROLE, pa.string(), nullable=False),
            pa.field(TASK, pa.string(), nullable=False),
        ]
    ),
}
# columns that must never be null (keys)
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    IMPRESSIONS: (EVENT_TIME, REQUEST_ID, DOMAIN, USER_ID, ITEM_ID, LABEL),
    BEHAVIORS: (EVENT_TIME, DOMAIN, USER_ID, ITEM_ID, BEHAVIOR),
    ITEMS: (ITEM_ID,),
    DOMAINS: (DOMAIN, ROLE, TASK),
}


class ContractError(ValueError):
    """Data that breaks the log contract; the message names the file/table and the problem."""


def columns(table: str) -> list[str]:
    """The contract's column names of a table, in order."""
    return SCHEMAS[table].names


def is_valid_domain_name(name: str) -> bool:
    """True when `name` may be used as a domain (it becomes part of file names and model tags)."""
    return isinstance(name, str) and _DOMAIN_RE.fullmatch(name) is not None


def check_domain_name(name: str) -> str:
    """Return `name` or raise ContractError saying why it is not a valid domain name."""
    if not is_valid_domain_name(name):
        raise ContractError(f"invalid domain name {name!r}: must match {DOMAIN_NAME_PATTERN}")
    return name


def domain_feature_columns(domains_schema_names: list[str]) -> list[str]:
    """The extra (domain-feature, e_d) columns of a domains table, in file order."""
    fixed = set(columns(DOMAINS))
    return [c for c in domains_schema_names if c not in fixed]


# ---------------------------------------------------------------------------------------------
# Landing-zone layout: <root>/<table>/dt=YYYY-MM-DD/*.parquet (or *.csv)
# ---------------------------------------------------------------------------------------------

_DT_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Partition:
    """One file of the landing zone."""

    table: str
    dt: str | None  # None for an unpartitioned dimension table
    path: Path


def partition_dir(root: Path | str, table: str, dt: str) -> Path:
    """The folder of one day's partition of a table."""
    return Path(root) / table / f"dt={dt}"


def list_partitions(root: Path | str, table: str, dt: str | None = None) -> list[Partition]:
    """Every parquet/csv file of a table (optionally one day), sorted for determinism."""
    base = Path(root) / table
    if not base.is_dir():
        return []
    out: list[Partition] = []
    for path in sorted(base.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".parquet", ".csv"):
            continue
        part_dt = None
        for parent in path.relative_to(base).parents:
            m = _DT_RE.match(parent.name)
            if m:
                part_dt = m.group(1)
        if dt is not None and part_dt != dt:
            continue
        out.append(Partition(table, part_dt, path))
    return out


def list_days(root: Path | str, table: str = IMPRESSIONS) -> list[str]:
    """The sorted dt values present for a table."""
    return sorted({p.dt for p in list_partitions(root, table) if p.dt is not None})


# ---------------------------------------------------------------------------------------------
# The training table (one row per target-domain impression) and the sequence-snapshot features.
# Built by features.dataset directly from logs, and by features.store through Feast: same names.
# ---------------------------------------------------------------------------------------------

IS_COLD = "is_cold"  # user had no target-domain impression in this domain before the training window's end
SNAPSHOT_TIME = "snapshot_time"  # the time a sequence snapshot is valid from (a day boundary, UTC)
# aligned per-element fields; `value` is the behaviour's value as an integer token (round(value): stars
# for `rate`, price for `purchase`), -1 where the behaviour has none
SEQ_FIELDS: tuple[str, ...] = (ITEM_ID, *SIDE_INFO, VALUE, EVENT_TIME)
DOMAIN_FEATURE_PREFIX = "d_"  # training-table columns holding domain features: d_<feature>


def seq_col(behavior: str, field: str) -> str:
    """Name of the list column holding `field` of the user's last-N `behavior` source items.

    e.g. seq_col("click", "item_id") == "seq_click_item_id"; element times are int64 epoch
    microseconds in seq_<behavior>_event_time. Lists are time-ordered, newest last, unpadded.
    """
    if behavior not in BEHAVIOR_TYPES or field not in SEQ_FIELDS:
        raise KeyError(f"no sequence column for behavior={behavior!r} field={field!r}")
    return f"seq_{behavior}_{field}"


def domain_feature_col(feature: str) -> str:
    """Training-table column of one domain feature (the domains table's extra column `feature`)."""
    return f"{DOMAIN_FEATURE_PREFIX}{feature}"
