"""Shared fixtures: the `tiny` landing zone, its training dataset and a trained tiny run.

Session-scoped and built once: every stage's tests reuse the same small, seeded artefacts.
Heavy imports live inside the fixtures so collecting tests stays fast.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY_SEED = 0
# each of `make test`'s two pytest workers runs on one thread (torch, BLAS, duckdb, and every
# subprocess it starts through $DACDR_THREADS): two workers fill a 2-core CI box, no more
TEST_THREADS = 1
# the one Ray instance of the suite (tests of `--engine ray`): 2 CPUs and a small object store
RAY_CPUS = 2
RAY_OBJECT_STORE_BYTES = 256 * 1024**2


def pytest_configure(config: pytest.Config) -> None:
    """Fix the thread budget before any test imports torch."""
    from dacdr.threads import configure

    configure(TEST_THREADS)


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `tiny` preset landing zone (with _truth/ and _onboard/ beside the tables)."""
    from features.simulator import simulate

    out = tmp_path_factory.mktemp("tiny") / "logs"
    simulate("tiny", seed=TINY_SEED, out=out)
    return out


@pytest.fixture(scope="session")
def tiny_dataset(tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/validation/test parquet built from the tiny landing zone."""
    from features.dataset import build_dataset

    out = tmp_path_factory.mktemp("tiny_dataset")
    build_dataset(tiny_logs, out)
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DACDR run trained on the tiny dataset (CPU, seeded)."""
    from models.run import train

    out = tmp_path_factory.mktemp("tiny_run")
    # validation AUC peaks within the first epochs on tiny; early stopping (patience 1) ends it
    return train(tiny_dataset, out, model="dacdr", device="cpu", seed=TINY_SEED, epochs=3, progress=False)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """A local Ray instance (or $RAY_ADDRESS's cluster) shared by every Ray test; yields its address.

    Session-scoped: starting Ray costs seconds, and a local instance must not size itself to the
    machine. Shut down when the session ends.
    """
    from dacdr.engine import init_ray, local_only, shutdown_ray

    local_only()  # before ray is imported: the instance binds 127.0.0.1 only
    pytest.importorskip("ray")

    # a short temp dir: Ray's unix sockets live under it, and under pytest's deep tmp paths they
    # would exceed the 107-byte socket path limit
    temp = Path(tempfile.mkdtemp(prefix="rt_", dir="/tmp"))
    try:
        yield init_ray(num_cpus=RAY_CPUS, object_store_bytes=RAY_OBJECT_STORE_BYTES, temp_dir=temp)
    finally:
        shutdown_ray()
        shutil.rmtree(temp, ignore_errors=True)
