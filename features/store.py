"""The dacdr Feast feature store: open, apply and check a built repo; the API the other modules import.

The repo's layout and config files live in features.store_config, its data build in
features.store_build (both re-exported here). Reading and writing it live beside this module:
features.materialize (offline -> online), features.online (online reads), features.offline
(point-in-time reads, the training table).

The Python API opens a repo in-process (open_store resolves the SQL registry's relative sqlite
path against the repo); the `feast` CLI works on it when run from inside <workdir>/feature_repo
(SQLAlchemy resolves that path against the current directory).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from features.store_build import SNAPSHOT_ROW_GROUP, BuildResult, activity_snapshots, build, domain_table
from features.store_config import (
    BUILD_INFO,
    DATA_DIRNAME,
    EPOCH,
    ONLINE_REDIS,
    ONLINE_SQLITE,
    PASSWORD_ENV,
    PROJECT,
    REGISTRY_FILE,
    REPO_DIRNAME,
    REPO_FILE,
    SQLITE_ONLINE_FILE,
    YAML_NAME,
    OnlineConfig,
    data_dir,
    feast_connection_string,
    redacted,
    redis_password,
    render_repo,
    repo_dir,
    write_store_yaml,
)

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

__all__ = [
    "ARROW_TYPES", "BUILD_INFO", "DATA_DIRNAME", "EPOCH", "ONLINE_REDIS", "ONLINE_SQLITE", "PASSWORD_ENV",
    "PROJECT", "REGISTRY_FILE", "REPO_DIRNAME", "REPO_FILE", "SNAPSHOT_ROW_GROUP", "SQLITE_ONLINE_FILE",
    "SQLITE_URL", "WRITE_BATCH_ROWS", "YAML_NAME", "BuildResult", "FeatureStoreError", "OnlineConfig",
    "activity_snapshots", "apply", "as_store", "build", "built_max_len", "check_online_store", "data_dir",
    "domain_table", "feast_connection_string", "online_store_file", "online_tables", "open_store",
    "pandas_type", "redacted", "redis_password", "render_repo", "repo_config", "repo_dir", "utc",
    "write_store_yaml",
]

# rows per online write batch: large batches amortise the per-call overhead of the online stores
WRITE_BATCH_ROWS = 20_000

# arrow types of the Feast dtypes the views declare (str(feast type) -> arrow)
ARROW_TYPES: dict[str, pa.DataType] = {
    "Array(Int64)": pa.list_(pa.int64()),
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "String": pa.string(),
    "Bytes": pa.binary(),
}


class FeatureStoreError(RuntimeError):
    """A feature-store operation that cannot proceed; the message says what to run or fix."""


def utc(ts: datetime) -> datetime:
    """A timezone-aware UTC datetime (naive means UTC, by contract)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def open_store(workdir: Path | str) -> FeatureStore:
    """A FeatureStore over <workdir>/feature_repo (FeatureStoreError when it was never built)."""
    from feast import FeatureStore

    repo = repo_dir(workdir)
    if not (repo / YAML_NAME).is_file():
        raise FeatureStoreError(
            f"{repo}: no {YAML_NAME}; run `dacdr features build --workdir {workdir}` first"
        )
    return FeatureStore(repo_path=str(repo), config=repo_config(repo))


SQLITE_URL = "sqlite:///"


def repo_config(repo: Path) -> RepoConfig:
    """The repo's feature_store.yaml with a relative SQLite registry resolved against the repo.

    Feast resolves relative file paths (the online store's, a file registry's) against the repo,
    but its SQL registry hands `path` to SQLAlchemy, which resolves a relative sqlite path
    against the current directory; so the yaml keeps it relative and it is made absolute here.
    """
    from feast.repo_config import load_repo_config

    config = load_repo_config(repo, repo / YAML_NAME)
    registry = config.registry_config
    if isinstance(registry, dict) and str(registry.get("path", "")).startswith(SQLITE_URL):
        target = Path(registry["path"].removeprefix(SQLITE_URL))
        if not target.is_absolute():
            config.registry_config = {**registry, "path": f"{SQLITE_URL}{repo / target}"}
    return config


def online_store_file(workdir: Path | str) -> Path | None:
    """The SQLite online store file a built repo points at; None when it uses Redis."""
    import yaml

    from features.feature_repo.batched_sqlite import STORE_TYPE

    repo = repo_dir(workdir)
    try:
        cfg = yaml.safe_load((repo / YAML_NAME).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FeatureStoreError(f"{repo / YAML_NAME}: unreadable ({exc}); rebuild the store") from None
    online = cfg.get("online_store") or {}
    if online.get("type", "sqlite") not in ("sqlite", STORE_TYPE):
        return None
    path = Path(online.get("path", f"{DATA_DIRNAME}/{SQLITE_ONLINE_FILE}"))
    return path if path.is_absolute() else repo / path


def online_tables(views: tuple[str, ...] | None = None) -> list[str]:
    """The SQLite online tables Feast keeps for dacdr's feature views (project_view)."""
    from features.feature_repo.views import (
        DOMAIN_FEATURES,
        ITEM_SIDE_INFO,
        USER_ACTIVITY,
        USER_PACKED,
        USER_SEQUENCES,
    )

    views = views or (USER_SEQUENCES, USER_ACTIVITY, USER_PACKED, ITEM_SIDE_INFO, DOMAIN_FEATURES)
    return [f"{PROJECT}_{v}" for v in views]


def check_online_store(workdir: Path | str, timeout_ms: int = 5000) -> Path | None:
    """The SQLite online store file, checked without creating it; FeatureStoreError in one line if broken.

    Feast's SQLite store opens its file with sqlite3.connect, which creates an empty database
    when the file is missing, and every read then fails with `no such table`: this reads the
    file read-only first, so a missing, corrupt, locked or never-materialized store is named
    before Feast touches it. Redis stores are not checked (None).
    """
    import sqlite3

    path = online_store_file(workdir)
    if path is None:
        return None
    hint = f"run `dacdr features apply` and `dacdr features materialize --workdir {workdir}`"
    if not path.is_file():
        raise FeatureStoreError(f"online store {path} does not exist; {hint}")
    try:
        try:
            names = _table_names(path, "ro", timeout_ms)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY_ROLLBACK":
                raise
            # a writer (materialize, push) was killed mid-transaction and left a hot journal: a
            # read-only open cannot roll it back, a read-write one does (what any writer's next
            # open would do) and never creates a file
            names = _table_names(path, "rw", timeout_ms)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):  # a writer (materialize) holds it: nothing to rebuild
            raise FeatureStoreError(f"online store {path} is locked by another connection ({exc})") from None
        raise FeatureStoreError(f"online store {path} is unreadable ({exc}); rebuild it: {hint}") from None
    except sqlite3.Error as exc:  # DatabaseError: "file is not a database" (corrupt or not SQLite)
        raise FeatureStoreError(f"online store {path} is unreadable ({exc}); rebuild it: {hint}") from None
    missing = [t for t in online_tables() if t not in names]
    if missing:
        raise FeatureStoreError(f"online store {path} lacks table(s) {missing}; {hint}")
    return path


def _table_names(path: Path, mode: str, timeout_ms: int) -> set[str]:
    """The tables of a SQLite file opened with `mode` (ro or rw: neither creates the file)."""
    import sqlite3

    # a URI so the path is not a connect() string
    conn = sqlite3.connect(f"{path.as_uri()}?mode={mode}", uri=True, timeout=timeout_ms / 1000)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def as_store(store_or_workdir: FeatureStore | Path | str) -> FeatureStore:
    """Accept an open FeatureStore or a working directory."""
    if isinstance(store_or_workdir, (str, Path)):
        return open_store(store_or_workdir)
    return store_or_workdir


def apply(workdir: Path | str) -> list[str]:
    """Register the repo's definitions (like `feast apply`); returns the applied object names."""
    from features.feature_repo.services import make_definitions

    store = open_store(workdir)
    defs = make_definitions(data_dir(workdir))
    objects = defs.objects()
    store.apply(objects)
    return [o.name for o in objects]


def built_max_len(workdir: Path | str) -> int:
    """The sequence length the store's snapshots were built with."""
    path = data_dir(workdir) / BUILD_INFO
    if not path.is_file():
        raise FeatureStoreError(f"{path}: missing; run `dacdr features build --workdir {workdir}` first")
    return int(json.loads(path.read_text())["max_len"])


def _int_mapper(dtype: pa.DataType) -> object:
    """pandas dtype for an arrow type: nullable Int64 for int64 (others default)."""
    import pandas as pd

    return pd.Int64Dtype() if dtype == pa.int64() else None


def pandas_type(dtype: pa.DataType) -> object:
    """pandas dtype for an arrow type: lists arrow-backed (as in the training table), int64 nullable."""
    import pandas as pd

    if pa.types.is_list(dtype):
        return pd.ArrowDtype(dtype)
    return _int_mapper(dtype)
