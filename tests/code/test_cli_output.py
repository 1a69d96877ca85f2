"""What the stage commands print: train's epoch lines and summary, evaluate's per-domain table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dacdr.cli import app


def _write_metrics(run: Path, bests: list[bool]) -> None:
    """A metrics.jsonl with one row per epoch; validation AUC 0.6 + 0.01 * epoch."""
    run.mkdir(parents=True, exist_ok=True)
    rows = [{"epoch": e, "train_loss": 0.1, "samples_per_s": 1000.0, "train_s": 1.0,
             "val_mean_domain_auc": 0.6 + 0.01 * e, "val_per_domain": {}, "best": b}
            for e, b in enumerate(bests)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("bests,epochs,patience,best,stop", [
    ([True, True, False], 3, 1, 1, "early stopping"),  # ran out of patience at the last allowed epoch
    ([True, False, False], 10, 2, 0, "early stopping"),
    ([True, False, True], 3, 2, 2, "the epoch cap"),
    ([True, True], 2, 1, 1, "the epoch cap"),
])
def test_summarize_run_best_epoch_and_stop_reason(
    tmp_path: Path, bests: list[bool], epochs: int, patience: int, best: int, stop: str
) -> None:
    """The best epoch is the last improving one; early stopping iff `patience` epochs followed it."""
    from models.run_dir import summarize_run

    _write_metrics(tmp_path, bests)
    summary = summarize_run(tmp_path, epochs, patience)
    assert (summary.best_epoch, summary.epochs_run, summary.metric) == (best, len(bests), "mean_domain_auc")
    assert summary.value == pytest.approx(0.6 + 0.01 * best)
    assert summary.stop.startswith(stop), summary.stop
    text = summary.render()
    assert f"best epoch {best + 1} of {len(bests)}" in text and f"run: {tmp_path}" in text


def test_train_and_evaluate_print_progress_summary_and_table(tiny_dataset: Path, tmp_path: Path) -> None:
    """`dacdr train` prints one line per epoch and a summary naming the run; `dacdr evaluate` prints
    every domain's all/cold/warm rows with the AUC that lands in the JSON it names."""
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_dataset), "--out", str(run), "--epochs", "2", "--max-batches", "3",
            "--batch-size", "256", "--device", "cpu", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    epoch_lines = [line for line in lines if re.match(r"\s+dacdr epoch \d/2: [\d,]+ samples/s, ", line)]
    assert len(epoch_lines) == len((run / "metrics.jsonl").read_text().splitlines()) >= 1
    assert all("val mean_domain_auc 0." in line for line in epoch_lines)
    summary = r"best epoch \d of \d run: mean_domain_auc 0\.\d{4} on validation; stopped by "
    assert re.search(summary, res.stdout)
    assert lines[-1].startswith(f"run: {run} (checkpoint.pt")

    args = ["evaluate", "--run", str(run), "--data", str(tiny_dataset), "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    path = run / "eval_test.json"
    assert res.stdout.splitlines()[-1] == f"wrote {path}"
    result = json.loads(path.read_text())
    for domain, groups in result["domains"].items():
        row = next(line for line in res.stdout.splitlines() if line.split()[:2] == [domain, "all"])
        assert f"{groups['all']['auc']:.4f}" in row and f"{groups['all']['n']:,}" in row
    assert "(all ctr domains)  all" in res.stdout
    for group in ("cold", "warm"):  # under each domain and under the overall row
        assert len(re.findall(rf"^\s+{group}\s", res.stdout, re.M)) == len(result["domains"]) + 1
