"""DACDR on the simulator's tiny preset (shared fixtures): it beats chance and a popularity baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import contract as C
from models.metrics import auc


def popularity_scores(data: Path, split: str = "test", prior_weight: float = 20.0) -> np.ndarray:
    """Each test row's item CTR in train (smoothed towards the global rate; unseen items get the rate)."""
    cols = [C.ITEM_ID, C.LABEL]
    train = pq.read_table(data / "train.parquet", columns=cols).to_pandas()
    test = pq.read_table(data / f"{split}.parquet", columns=cols).to_pandas()
    prior = train[C.LABEL].mean()
    g = train.groupby(C.ITEM_ID)[C.LABEL].agg(["sum", "count"])
    ctr = (g["sum"] + prior * prior_weight) / (g["count"] + prior_weight)
    return pd.Series(test[C.ITEM_ID]).map(ctr).fillna(prior).to_numpy()


def test_tiny_dacdr_beats_chance_and_popularity(tiny_run: Path, tiny_dataset: Path) -> None:
    """Overall test AUC clearly above 0.5 and above the item-popularity baseline; eval file written."""
    from models.evaluate import evaluate

    result = evaluate(tiny_run, tiny_dataset, split="test", device="cpu")
    assert (tiny_run / "eval_test.json").is_file()
    overall = result["overall"][C.TASK_CTR]["all"]
    labels = pq.read_table(tiny_dataset / "test.parquet", columns=[C.LABEL]).column(0).to_numpy()
    pop = auc(labels, popularity_scores(tiny_dataset))
    print(f"tiny test AUC: dacdr {overall['auc']:.4f} popularity {pop:.4f}")
    assert overall["auc"] > 0.55
    assert overall["auc"] > pop
    for dom, groups in result["domains"].items():
        assert set(groups) == {"all", "cold", "warm"}, dom
        assert groups["all"]["n"] == groups["cold"]["n"] + groups["warm"]["n"]


def test_tiny_run_layout(tiny_run: Path) -> None:
    """The run dir holds the best checkpoint, the resume state and one metrics line per epoch."""
    from models.checkpoint import load_checkpoint

    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert rows and [r["epoch"] for r in rows] == list(range(len(rows)))
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    model, spec, meta = load_checkpoint(tiny_run / "checkpoint.pt")
    assert meta["manifest"]["days"]["test"] and meta["val_metric"] == "mean_domain_auc"
    assert (tiny_run / "last.pt").is_file()
    assert set(spec.domain_tasks) >= set(meta["manifest"]["target_domains"])


@pytest.mark.parametrize("cmd", ["train", "evaluate", "finetune"])
def test_cli_help(cmd: str) -> None:
    """Every model command is registered in `dacdr` and has help text."""
    from typer.testing import CliRunner

    from dacdr.cli import app

    res = CliRunner().invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "--data" in res.output
