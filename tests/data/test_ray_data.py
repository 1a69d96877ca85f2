"""`--engine ray` (features.ray_data): the sequence snapshots and the training table equal the local ones.

Compared as tables sorted by their keys, row for row, on the `tiny` preset; partition counts that do
not divide the users evenly, so users of one partition are not contiguous ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dacdr.cli import app
from features import contract as C
from features import io
from features.dataset import SPLITS, build_training_table
from features.sequences import sequence_snapshots, with_sequences

IMPRESSION_KEYS = [C.EVENT_TIME, C.REQUEST_ID, C.ITEM_ID, C.DOMAIN, C.USER_ID, C.LABEL]


def _sorted(tbl: pa.Table, keys: list[str]) -> pa.Table:
    """`tbl` sorted by `keys` (ascending), chunks combined, so equal tables compare equal."""
    return tbl.sort_by([(k, "ascending") for k in keys]).combine_chunks()


def _inputs(logs: Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    """behaviors, items, domains of a landing zone."""
    return tuple(io.read_table(logs, t) for t in (C.BEHAVIORS, C.ITEMS, C.DOMAINS))


def test_split_by_user_puts_each_user_in_one_piece_in_order() -> None:
    """Every row lands in exactly one piece, all rows of a user in the same one, order kept."""
    from features.ray_data import split_by_user

    rng = np.random.default_rng(0)
    tbl = pa.table({C.USER_ID: rng.integers(0, 50, 400), "pos": np.arange(400)})
    pieces = split_by_user(tbl, 3)
    assert sum(p.num_rows for p in pieces) == 400
    for i, piece in enumerate(pieces):
        assert (np.mod(piece[C.USER_ID].to_numpy(), 3) == i).all()
        assert (np.diff(piece["pos"].to_numpy()) > 0).all()
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        split_by_user(tbl, 0)


def test_snapshots_on_ray_equal_local(ray_session: str, tiny_logs: Path) -> None:
    """ray_data.sequence_snapshots (3 partitions) == features.sequences.sequence_snapshots, row for row."""
    from features.ray_data import sequence_snapshots as ray_snapshots

    behaviors, items, domains = _inputs(tiny_logs)
    local = sequence_snapshots(behaviors, items, domains, 20)
    on_ray = ray_snapshots(behaviors, items, domains, 20, partitions=3)
    assert local.num_rows > 1000 and on_ray.schema == local.schema
    keys = [C.USER_ID, C.SNAPSHOT_TIME]
    assert _sorted(on_ray, keys).equals(_sorted(local, keys))


def test_full_history_sequences_on_ray_equal_local(ray_session: str, tiny_logs: Path) -> None:
    """with_sequences as of one time (the cold-start protocol's full history) is equal on Ray too."""
    from features.ray_data import with_sequences as ray_with_sequences

    behaviors, items, domains = _inputs(tiny_logs)
    rows = io.read_table(tiny_logs, C.IMPRESSIONS).slice(0, 5000)
    at = datetime(2100, 1, 1, tzinfo=UTC)
    local = with_sequences(rows, behaviors, items, domains, 10, history_at=at)
    on_ray = ray_with_sequences(rows, behaviors, items, domains, 10, history_at=at, partitions=4)
    assert on_ray.equals(local)  # the caller's row order, not only the same rows
    assert sum(len(v) for v in local["seq_click_item_id"].to_pylist()) > 0


def test_build_dataset_on_ray_equals_local(ray_session: str, tiny_logs: Path, tiny_dataset: Path,
                                           tmp_path: Path) -> None:
    """`dacdr build-dataset --engine ray` writes the local engine's splits and manifest, row for row."""
    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["build-dataset", "--logs", str(tiny_logs), "--out", str(out),
                                   "--engine", "ray"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for split in SPLITS:
        local = pq.read_table(tiny_dataset / f"{split}.parquet")
        on_ray = pq.read_table(out / f"{split}.parquet")
        assert on_ray.num_rows == local.num_rows > 0
        assert _sorted(on_ray, IMPRESSION_KEYS).equals(_sorted(local, IMPRESSION_KEYS))
    assert (out / "manifest.json").read_text() == (tiny_dataset / "manifest.json").read_text()


def test_training_table_on_ray_equals_local_in_order(ray_session: str, tiny_logs: Path) -> None:
    """build_training_table(engine="ray") returns the local frame itself: same rows, order and dtypes."""
    local = build_training_table(tiny_logs, max_len=10)
    on_ray = build_training_table(tiny_logs, max_len=10, engine="ray")
    assert list(on_ray.dtypes) == list(local.dtypes)
    assert on_ray.equals(local)


PARITY_FAULTS = ("duplicate_request_item", "csv_garbage_cells", "null_user_id", "bad_behavior_value")


def _zone(out: Path) -> dict[str, pa.Table]:
    """Every parquet file under `out`'s curated/ and quarantine/ zones, by relative path."""
    files = sorted((out / "curated").rglob("*.parquet")) + sorted((out / "quarantine").rglob("*.parquet"))
    return {str(p.relative_to(out)): pq.read_table(p) for p in files}


@pytest.mark.parametrize("fault", PARITY_FAULTS)
def test_validate_on_ray_equals_local(ray_session: str, tmp_path: Path, fault: str) -> None:
    """validate_day with engine ray writes the local engine's curated and quarantine rows (same
    reasons) for bad batches of both event tables: duplicates (first copy kept), unparsable CSV cells,
    null keys."""
    from dataclasses import replace

    from features.validation import ValidationConfig, validate_day
    from tests.data import bad_batches as BB

    good = BB.good_tables()
    logs = BB.write_good_landing(tmp_path / "logs")
    bad = next(f for f in BB.FAULTS if f.name == fault).apply(logs, good)
    config = ValidationConfig(data_docs=False)
    local = validate_day(logs, BB.DT, tmp_path / "local", now=BB.NOW, config=config)
    on_ray = validate_day(logs, BB.DT, tmp_path / "ray", now=BB.NOW, config=replace(config, engine="ray"))
    assert on_ray.tables == local.tables and sum(t.quarantined for t in local.tables.values()) == len(bad)
    zone_local, zone_ray = _zone(tmp_path / "local"), _zone(tmp_path / "ray")
    assert zone_ray.keys() == zone_local.keys()
    for path, tbl in zone_local.items():
        assert zone_ray[path].equals(tbl), path


def test_validate_cli_on_ray_equals_local_on_tiny(ray_session: str, tiny_logs: Path, tmp_path: Path) -> None:
    """`dacdr validate --engine ray` on a tiny day: the local engine's curated zone, row for row."""
    dt = C.list_days(tiny_logs)[0]
    for engine in ("local", "ray"):
        res = CliRunner().invoke(app, ["validate", "--logs", str(tiny_logs), "--dt", dt, "--out",
                                       str(tmp_path / engine), "--engine", engine, "--no-data-docs"])
        assert res.exit_code == 0, res.output + repr(res.exception)
    zone_local, zone_ray = _zone(tmp_path / "local"), _zone(tmp_path / "ray")
    assert zone_ray.keys() == zone_local.keys() and len(zone_local) >= 8
    for path, tbl in zone_local.items():
        assert zone_ray[path].equals(tbl), path
