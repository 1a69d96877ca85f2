"""`dacdr train --config FILE` (YAML or TOML): file < flags, every field settable, resolved config saved
as RUN/config.json; an unknown key or a bad value is one `error:` line naming it, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dacdr.cli import app
from models.checkpoint import load_file
from tests.model.synth import write_synth_dataset

YAML = """\
train:
  epochs: 1
  batch_size: 64
  lr: 0.01
  weight_decay: 0.0
  max_batches_per_epoch: 2
  seed: 3
model:
  embed_dim: 8
  attn_dim: 4
  head_hidden: [16]
  use_item_attention: false
"""
TOML = """\
[train]
epochs = 1
batch_size = 64
lr = 0.01
weight_decay = 0.0
max_batches_per_epoch = 2
seed = 3

[model]
embed_dim = 8
attn_dim = 4
head_hidden = [16]
use_item_attention = false
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small two-domain dataset."""
    out = tmp_path_factory.mktemp("cfg") / "ds"
    return write_synth_dataset(out, seed=0, n_train=300, n_eval=120, max_len=4)


def _train(data: Path, out: Path, *args: str) -> object:
    """`dacdr train --data DATA --out OUT --device cpu --no-progress ARGS`."""
    return CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(out), "--device", "cpu",
                                    "--no-progress", *args])


@pytest.mark.parametrize("suffix,text", [(".yaml", YAML), (".toml", TOML)])
def test_config_file_sets_train_and_model_fields_and_flags_win(
    suffix: str, text: str, data: Path, tmp_path: Path
) -> None:
    """The file sets TrainConfig and DACDRConfig fields no flag reaches (weight_decay, head_hidden, the
    attention switch); --seed on the command line overrides the file; RUN/config.json holds the result."""
    path = tmp_path / f"hp{suffix}"
    path.write_text(text)
    out = tmp_path / "run"
    res = _train(data, out, "--config", str(path), "--seed", "5")
    assert res.exit_code == 0, res.output + repr(res.exception)
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["seed"] == 5 and saved["train"]["lr"] == 0.01
    assert saved["train"]["weight_decay"] == 0.0 and saved["train"]["batch_size"] == 64
    assert saved["model"]["embed_dim"] == 8 and saved["model"]["head_hidden"] == [16]
    assert saved["model"]["use_item_attention"] is False
    ck = load_file(out / "checkpoint.pt")
    assert ck["config"]["embed_dim"] == 8 and ck["config"]["use_item_attention"] is False
    assert ck["meta"]["train_config"]["weight_decay"] == 0.0 and ck["meta"]["train_config"]["seed"] == 5
    # the saved file is itself a config: the same run again
    again = _train(data, tmp_path / "again", "--config", str(out / "config.json"))
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == saved


@pytest.mark.parametrize("text,named", [
    ("train:\n  epoch: 3\n", "train.epoch"),  # a typo
    ("model:\n  embed_size: 8\n", "model.embed_size"),
    ("model:\n  n_items: 8\n", "model.n_items"),  # a size comes from the data
    ("train:\n  lr: fast\n", "train.lr"),
    ("train:\n  epochs: 2.5\n", "train.epochs"),
    ("model:\n  head_hidden: [16, x]\n", "model.head_hidden"),
    ("train:\n  epochs: 0\n", "train.epochs"),
    ("optimizer:\n  lr: 1\n", "'optimizer'"),
    ("train: [1, 2]\n", "'train'"),
    ("train:\n  lr: [\n", "not valid YAML"),
])
def test_bad_config_is_one_line_naming_it(text: str, named: str, tmp_path: Path) -> None:
    """An unknown key, a size, a wrong type, a bad section or broken YAML: one line naming it, exit 2,
    before any data is read."""
    data = tmp_path / "ds"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    path = tmp_path / "hp.yaml"
    path.write_text(text)
    res = _train(data, tmp_path / "run", "--config", str(path))
    lines = res.stderr.splitlines()
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert len(lines) == 1 and lines[0].startswith("error: --config") and named in lines[0], res.stderr
    assert not (tmp_path / "run").exists()


def test_finetune_config_refuses_a_model_section(tmp_path: Path) -> None:
    """Fine-tuning keeps the base run's model: a model section is refused in one line."""
    base, data = tmp_path / "base", tmp_path / "ds"
    base.mkdir()
    (base / "checkpoint.pt").write_bytes(b"x")
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"domains": {"books": {"task": "ctr"}}}))
    path = tmp_path / "hp.toml"
    path.write_text("[model]\nembed_dim = 8\n")
    res = CliRunner().invoke(app, ["finetune", "--base", str(base), "--domain", "books", "--data", str(data),
                                   "--out", str(tmp_path / "ft"), "--config", str(path)])
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert res.stderr.startswith("error: --config: a model section does not apply"), res.stderr
