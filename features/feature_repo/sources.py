"""Feast file sources: the parquet files `features.store.build` writes under a repo's data folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feast import FileSource, PushSource

from features import contract as C

# Timestamp column of the dimension tables (items, domains): they hold from the start of time,
# so every impression, however old, finds its row in a point-in-time join.
VALID_FROM = "valid_from"

# file names under the data folder (one parquet file per feature view)
USER_SEQUENCES_FILE = "user_sequences.parquet"
USER_ACTIVITY_FILE = "user_activity.parquet"
USER_PACKED_FILE = "user_packed.parquet"
ITEMS_FILE = "items.parquet"
DOMAINS_FILE = "domains.parquet"
# push sources (Feast's push API; `dacdr features push` appends same-day behaviour through them)
USER_SEQUENCES_PUSH = "user_sequences_push"
USER_PACKED_PUSH = "user_packed_push"
DATA_FILES: tuple[str, ...] = (
    USER_SEQUENCES_FILE, USER_ACTIVITY_FILE, USER_PACKED_FILE, ITEMS_FILE, DOMAINS_FILE
)


@dataclass(frozen=True)
class Sources:
    """The batch sources of every feature view (absolute parquet paths)."""

    user_sequences: FileSource
    user_activity: FileSource
    user_packed: FileSource
    items: FileSource
    domains: FileSource
    user_sequences_push: PushSource  # the user_sequences view's source: batch = user_sequences
    user_packed_push: PushSource  # the user_packed view's source: batch = user_packed

    def all(self) -> list[FileSource | PushSource]:
        """Every source, batch sources first (the order FeatureStore.apply takes them)."""
        return [self.user_sequences, self.user_activity, self.user_packed, self.items, self.domains,
                self.user_sequences_push, self.user_packed_push]


def make_sources(data_dir: Path) -> Sources:
    """File sources reading `data_dir`'s parquet files (made absolute: the duckdb store reads paths as-is)."""
    data_dir = Path(data_dir).resolve()
    sequences = FileSource(
        name="user_sequences_source",
        path=str(data_dir / USER_SEQUENCES_FILE),
        timestamp_field=C.SNAPSHOT_TIME,
        description="Daily per-user snapshots of source-domain behaviour sequences.",
    )
    packed = FileSource(
        name="user_packed_source",
        path=str(data_dir / USER_PACKED_FILE),
        timestamp_field=C.SNAPSHOT_TIME,
        description="user_sequences' snapshots, each row's lists packed into one blob (features.packed).",
    )
    return Sources(
        user_sequences=sequences,
        user_activity=FileSource(
            name="user_activity_source",
            path=str(data_dir / USER_ACTIVITY_FILE),
            timestamp_field=C.SNAPSHOT_TIME,
            description="Daily per-user source-domain activity statistics.",
        ),
        user_packed=packed,
        items=FileSource(
            name="items_source",
            path=str(data_dir / ITEMS_FILE),
            timestamp_field=VALID_FROM,
            description="Item side info (dimension table).",
        ),
        domains=FileSource(
            name="domains_source",
            path=str(data_dir / DOMAINS_FILE),
            timestamp_field=VALID_FROM,
            description="Domain features, role and task (dimension table).",
        ),
        user_sequences_push=PushSource(
            name=USER_SEQUENCES_PUSH,
            batch_source=sequences,
            description="Users' lists after same-day behaviour, pushed by `dacdr features push`.",
        ),
        user_packed_push=PushSource(
            name=USER_PACKED_PUSH,
            batch_source=packed,
            description="The same pushed lists, packed (features.packed).",
        ),
    )
