"""Feast feature views: user sequences, user activity, item side info and domain features."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from feast import FeatureView, Field
from feast.types import Array, Bytes, Int64, String
from feast.types import Float64 as FeastFloat64

from features import contract as C
from features.feature_repo.entities import domain, item, user
from features.feature_repo.sources import DOMAINS_FILE, Sources

# Feature view names (the stable public names other stages refer to)
USER_SEQUENCES = "user_sequences"
USER_ACTIVITY = "user_activity"
USER_PACKED = "user_packed"  # user_sequences' lists as one blob per user (features.packed): serving reads it
ITEM_SIDE_INFO = "item_side_info"
DOMAIN_FEATURES = "domain_features"

PACKED_SEQUENCES = "packed_sequences"  # the packed view's one feature

# user-activity statistic columns (counts are of source-domain behaviours strictly before the snapshot)
DAYS_ACTIVE = "days_active"  # distinct UTC days with any source-domain behaviour
LAST_SEEN = "last_seen"  # epoch microseconds of the latest source-domain behaviour (null: never)

# ttl 0 = no expiry: a snapshot stays valid until the next one, exactly like attach_sequences' as-of join
NO_TTL = timedelta(0)


def activity_count_col(behavior: str) -> str:
    """Name of the user-activity column counting the user's source-domain `behavior` events."""
    if behavior not in C.BEHAVIOR_TYPES:
        raise KeyError(f"unknown behavior {behavior!r}")
    return f"n_{behavior}"


def sequence_columns() -> list[str]:
    """Every seq_<behavior>_<field> column, in contract order (behaviour-major)."""
    return [C.seq_col(b, f) for b in C.BEHAVIOR_TYPES for f in C.SEQ_FIELDS]


def activity_columns() -> list[str]:
    """The user-activity statistic columns, in order."""
    return [activity_count_col(b) for b in C.BEHAVIOR_TYPES] + [DAYS_ACTIVE, LAST_SEEN]


def item_columns() -> list[str]:
    """The item side-info feature columns, in contract order."""
    return [*C.SIDE_INFO, C.PRICE]


def domain_view_columns(domain_features: list[str]) -> list[str]:
    """The domain view's feature columns: role, task and d_<feature> for each domain feature."""
    return [C.ROLE, C.TASK] + [C.domain_feature_col(f) for f in domain_features]


def domain_features_in(data_dir: Path) -> list[str]:
    """The raw domain-feature names stored in a built data folder's domains parquet (schema only)."""
    path = Path(data_dir) / DOMAINS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no domains parquet; run `dacdr features build` first")
    names = pq.read_schema(path).names
    prefix = C.DOMAIN_FEATURE_PREFIX
    return [n[len(prefix) :] for n in names if n.startswith(prefix)]


@dataclass(frozen=True)
class Views:
    """The feature views of the dacdr feature store."""

    user_sequences: FeatureView
    user_activity: FeatureView
    user_packed: FeatureView
    item_side_info: FeatureView
    domain_features: FeatureView

    def all(self) -> list[FeatureView]:
        """Every view, in a fixed order."""
        users = [self.user_sequences, self.user_activity, self.user_packed]
        return [*users, self.item_side_info, self.domain_features]


def make_views(sources: Sources, domain_features: list[str]) -> Views:
    """Build the feature views over `sources`; `domain_features` are the domains table's extra columns."""
    return Views(
        user_sequences=FeatureView(
            name=USER_SEQUENCES,
            entities=[user],
            ttl=NO_TTL,
            schema=[Field(name=c, dtype=Array(Int64)) for c in sequence_columns()],
            source=sources.user_sequences_push,  # batch source: sources.user_sequences
            online=True,
            description="Last-N source-domain behaviours per type, with aligned side-info and time arrays.",
        ),
        user_activity=FeatureView(
            name=USER_ACTIVITY,
            entities=[user],
            ttl=NO_TTL,
            schema=[Field(name=c, dtype=Int64) for c in activity_columns()],
            source=sources.user_activity,
            online=True,
            description="Source-domain activity counts per behaviour type, days active, last seen (us).",
        ),
        user_packed=FeatureView(
            name=USER_PACKED,
            entities=[user],
            ttl=NO_TTL,
            schema=[Field(name=PACKED_SEQUENCES, dtype=Bytes)],
            source=sources.user_packed_push,  # batch source: sources.user_packed
            online=True,
            description="user_sequences' lists of a snapshot packed into one blob (format: features.packed).",
        ),
        item_side_info=FeatureView(
            name=ITEM_SIDE_INFO,
            entities=[item],
            ttl=NO_TTL,
            schema=[Field(name=c, dtype=Int64) for c in C.SIDE_INFO]
            + [Field(name=C.PRICE, dtype=FeastFloat64)],
            source=sources.items,
            online=True,
            description="Item side info: category, brand, shop, price.",
        ),
        domain_features=FeatureView(
            name=DOMAIN_FEATURES,
            entities=[domain],
            ttl=NO_TTL,
            schema=[Field(name=c, dtype=String) for c in domain_view_columns(domain_features)],
            source=sources.domains,
            online=True,
            description="Domain role, task and the domains table's extra (string) features as d_<feature>.",
        ),
    )
