"""Training loop: checkpoint round trip, validation selection, bit-identical resume, DDP, fine-tuning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.dacdr import FINETUNE_TRAINABLE
from models.predict import predict
from models.run import train
from models.train import BEST, LAST, METRICS
from models.vocab import UNK
from tests.model.conftest import NEW_DOMAIN, SYNTH_SEED

REPO = Path(__file__).resolve().parents[2]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-equal tensors, NaN equal to NaN (the prior's value table marks tokens without a value NaN)."""
    if a.is_floating_point():
        fill = 7.25  # any value: NaNs compare equal by position
        return bool(torch.equal(torch.nan_to_num(a, nan=fill), torch.nan_to_num(b, nan=fill)))
    return torch.equal(a, b)


def test_checkpoint_round_trip_rebuilds_identical_model(
    synth_run: Path, synth_data: Path, tmp_path: Path
) -> None:
    """load_checkpoint (weights_only) -> save -> load gives identical weights, predictions and meta."""
    raw = torch.load(synth_run / BEST, map_location="cpu", weights_only=True)
    assert set(raw) == {"format", "model_name", "config", "spec", "state_dict", "meta"}
    model, spec, meta = load_checkpoint(synth_run / BEST)
    test = pq.read_table(synth_data / "test.parquet")
    p1 = predict(model, spec, test, batch_size=512)
    save_checkpoint(tmp_path / "again.pt", model, meta["model_name"], spec, meta)
    model2, spec2, meta2 = load_checkpoint(tmp_path / "again.pt")
    sd1, sd2 = model.state_dict(), model2.state_dict()
    assert sd1.keys() == sd2.keys() and all(_same(sd1[k], sd2[k]) for k in sd1)
    assert (predict(model2, spec2, test, batch_size=512) == p1).all()
    assert meta2["val_value"] == meta["val_value"] and meta["model_name"] == "dacdr"
    # the best checkpoint is the epoch with the best validation AUC (never test)
    rows = [json.loads(line) for line in (synth_run / METRICS).read_text().splitlines()]
    best = max(rows, key=lambda r: r["val_mean_domain_auc"])
    if meta["epoch"] == -1:  # the untrained start (DACDR's closed-form prior) was never beaten
        assert best["val_mean_domain_auc"] <= meta["val_value"]
    else:
        assert meta["epoch"] == best["epoch"] and meta["val_value"] == best["val_mean_domain_auc"]


def test_old_or_foreign_checkpoints_fail_with_a_clear_error(synth_run: Path, tmp_path: Path) -> None:
    """A format-1 checkpoint (before value tokens) names the format and says to retrain; a foreign file
    says it is not a checkpoint; neither reaches load_state_dict."""
    raw = torch.load(synth_run / BEST, map_location="cpu", weights_only=True)
    torch.save({**raw, "format": "dacdr-checkpoint/1"}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"dacdr-checkpoint/1 checkpoint.*value.*retrain"):
        load_checkpoint(tmp_path / "old.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a dacdr-checkpoint/2 checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_resume_continues_to_the_same_result(synth_data: Path, tmp_path: Path) -> None:
    """3 epochs straight == 1 epoch, stop, resume to 3: bit-identical parameters and optimizer moments."""
    common = dict(model="dacdr", device="cpu", seed=SYNTH_SEED, batch_size=128, patience=10,
                  max_batches_per_epoch=6, progress=False)
    straight = train(synth_data, tmp_path / "straight", epochs=3, **common)
    train(synth_data, tmp_path / "resumed", epochs=1, **common)
    resumed = train(synth_data, tmp_path / "resumed", epochs=3, resume=True, **common)
    a = torch.load(straight / LAST, weights_only=True)
    b = torch.load(resumed / LAST, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert all(_same(a["model"][k], b["model"][k]) for k in a["model"])
    for oa, ob in zip(a["optimizers"], b["optimizers"], strict=True):
        for key, st in oa["state"].items():
            assert all(torch.equal(v, ob["state"][key][n]) for n, v in st.items() if torch.is_tensor(v))
    assert len((resumed / METRICS).read_text().splitlines()) == 3


def test_ddp_two_process_gloo_matches_single_process(synth_data: Path, tmp_path: Path) -> None:
    """torchrun 2 x batch 64 (gloo) == 1 process x batch 128 on the same rows: same model after 3 steps."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "models.cli", "train", "--data", str(synth_data), "--out", str(out), "--device", "cpu",
           "--epochs", "1", "--batch-size", "64", "--max-batches", "3", "--seed", str(SYNTH_SEED),
           "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(synth_data, tmp_path / "single", device="cpu", seed=SYNTH_SEED, epochs=1, batch_size=128,
                   max_batches_per_epoch=3, progress=False)
    m_ddp, spec, _ = load_checkpoint(out / BEST)
    m_one, _, _ = load_checkpoint(single / BEST)
    test = pq.read_table(synth_data / "test.parquet")
    p_ddp, p_one = predict(m_ddp, spec, test), predict(m_one, spec, test)
    assert abs(p_ddp - p_one).max() < 1e-3
    assert len((out / METRICS).read_text().splitlines()) == 1  # only rank 0 wrote


def test_finetune_trains_only_the_paper_parameters(synth_run: Path, synth_new_domain: Path,
                                                   tmp_path: Path) -> None:
    """Frozen parameters stay bit-identical (grown tables: old rows kept, new = UNK); trained ones move
    away from where fine-tuning started (the base grown to the new spec), compared by value."""
    import copy

    from models.finetune import finetune, grow_for_spec

    base, base_spec, _ = load_checkpoint(synth_run / BEST)
    out = finetune(synth_run, NEW_DOMAIN, synth_new_domain, tmp_path / "ft", epochs=1, seed=0, device="cpu",
                   batch_size=128, progress=False)
    ft, spec, meta = load_checkpoint(out / BEST)
    assert meta["finetune_domain"] == NEW_DOMAIN and spec.domain_tasks[NEW_DOMAIN] == "ctr"
    assert len(spec.items) > len(base_spec.items)
    before = dict(base.named_parameters())
    # the exact starting point: finetune grows the base to the extended spec, then trains
    start = dict(grow_for_spec(copy.deepcopy(base), spec).named_parameters())
    trained_moved = []
    for name, p in ft.named_parameters():
        old = before[name].detach()
        new = p.detach()
        head = new[: old.shape[0]] if new.shape != old.shape else new
        if name.startswith(FINETUNE_TRAINABLE):
            assert new.shape == start[name].shape, name
            trained_moved.append(not torch.equal(new, start[name].detach()))  # values, not the shape
        else:
            assert torch.equal(head, old), f"frozen parameter {name} changed"
            if new.shape != old.shape:  # grown frozen table: new rows start (and stay) at the UNK row
                assert torch.equal(new[old.shape[0]:], old[UNK].expand_as(new[old.shape[0]:])), name
    assert all(trained_moved) and len(trained_moved) >= 8
    want = {n for n, _ in ft.named_parameters() if n.startswith(FINETUNE_TRAINABLE)}
    assert set(meta["trained_parameters"]) == want


def test_bad_input_is_named(synth_data: Path, tmp_path: Path) -> None:
    """Unknown model names and missing datasets give clear errors."""
    with pytest.raises(ValueError, match="unknown model"):
        train(synth_data, tmp_path / "x", model="nope", device="cpu")
    with pytest.raises(FileNotFoundError, match="manifest"):
        train(tmp_path, tmp_path / "y", device="cpu")


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_checkpoint_names_the_file(synth_run: Path, tmp_path: Path, damage: str) -> None:
    """A 0-byte, truncated or garbage checkpoint fails with an error naming the file and 'damaged'."""
    from models.checkpoint import CheckpointError

    raw = (synth_run / BEST).read_bytes()
    broken = tmp_path / "checkpoint.pt"
    broken.write_bytes({"empty": b"", "truncated": raw[: len(raw) // 2], "garbage": b"\x00junk" * 99}[damage])
    with pytest.raises(CheckpointError, match=rf"{broken}: damaged checkpoint") as info:
        load_checkpoint(broken)
    assert "\n" not in str(info.value)


def test_resume_from_damaged_last_pt_names_it(synth_data: Path, tmp_path: Path) -> None:
    """`train --resume` over an empty last.pt says which file is damaged (not a bare EOFError/Aborted)."""
    from models.checkpoint import CheckpointError

    out = tmp_path / "run"
    out.mkdir()
    (out / LAST).write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{out / LAST}: damaged checkpoint \(0 bytes"):
        train(synth_data, out, model="dacdr", device="cpu", epochs=1, resume=True, progress=False)


def test_atomic_save_fsyncs_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """atomic_save fsyncs the data before the rename and the folder after it; no temp file remains."""
    import stat

    from models import checkpoint as ck

    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        """Record whether a file or a folder was synced."""
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(ck.os, "fsync", spy)
    ck.atomic_save({"x": torch.ones(3)}, tmp_path / "a.pt")
    assert synced == ["file", "dir"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_resume_after_crash_before_last_pt_has_one_row_per_epoch(synth_data: Path, tmp_path: Path) -> None:
    """A crash after an epoch's metrics row but before its last.pt: the resumed run's epochs are 0,1,2."""
    common = dict(model="dacdr", device="cpu", seed=SYNTH_SEED, batch_size=128, patience=10,
                  max_batches_per_epoch=3, progress=False)
    out = train(synth_data, tmp_path / "run", epochs=2, **common)
    # the state of a crash during epoch 1's save: its row was appended, last.pt still says epoch 0
    first = train(synth_data, tmp_path / "first", epochs=1, **common)
    (out / LAST).write_bytes((first / LAST).read_bytes())
    with open(out / METRICS, "a") as fh:
        fh.write('{"epoch": 2, "train_lo')  # and a torn line from the moment of the crash
    train(synth_data, out, epochs=3, resume=True, **common)
    epochs = [json.loads(line)["epoch"] for line in (out / METRICS).read_text().splitlines()]
    assert epochs == [0, 1, 2]
