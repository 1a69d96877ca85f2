"""Model-test fixtures: a small synthetic dataset (no other stage needed) and a short run on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.synth import write_synth_dataset

SYNTH_SEED = 0
NEW_DOMAIN = "t_new"


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/validation/test + manifest with the training-table columns (two ctr domains)."""
    return write_synth_dataset(tmp_path_factory.mktemp("synth") / "ds", seed=SYNTH_SEED, n_train=3000,
                               n_eval=800, max_len=8)


@pytest.fixture(scope="session")
def synth_new_domain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset of a new domain: one feature value shared with the base, one new; new items too."""
    return write_synth_dataset(tmp_path_factory.mktemp("synth_new") / "ds", seed=7, n_train=600, n_eval=300,
                               max_len=8, domains={NEW_DOMAIN: ("feed", "kiosk")}, n_items=360)


@pytest.fixture(scope="session")
def synth_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of DACDR on the synthetic dataset."""
    from models.run import train

    out = tmp_path_factory.mktemp("synth_run")
    return train(synth_data, out, model="dacdr", device="cpu", seed=SYNTH_SEED, epochs=2, batch_size=256,
                 patience=5, progress=False)
