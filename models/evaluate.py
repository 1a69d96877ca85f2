"""Evaluate a run's best checkpoint on a dataset split: per domain and overall, all / cold / warm users."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from features import contract as C
from models.checkpoint import load_checkpoint
from models.metrics import auc, gauc, logloss, mae, rmse
from models.predict import predict, resolve_device
from models.train import BEST, read_split

GROUPS = ("all", "cold", "warm")
# the columns of the printed table, per task (the JSON holds every metric)
TABLE_COLUMNS = {C.TASK_CTR: ("auc", "gauc", "logloss"), C.TASK_RATING: ("mae", "rmse")}


def eval_path(run: Path, split: str) -> Path:
    """Where evaluate writes the metrics of `split`: RUN/eval_<split>.json."""
    return Path(run) / f"eval_{split}.json"


def format_table(result: dict) -> str:
    """evaluate's result as text: per task, one block of domain x (all, cold, warm) rows, then overall."""
    r = result
    lines = [f"{r['model_name']} on the {r['split']} split of {r['data']} ({r['rows']:,} rows)"]
    for task, cols in TABLE_COLUMNS.items():
        blocks = [(d, m) for d, m in result["domains"].items() if cols[0] in m["all"]]
        if task in result["overall"]:
            blocks.append((f"(all {task} domains)", result["overall"][task]))
        if not blocks:
            continue
        width = max(len(d) for d, _ in blocks)
        head = "".join(f" {c.upper():>8}" for c in cols)
        lines.append(f"  {task:<{width}}  {'users':<5} {'rows':>9}{head}")
        for name, groups in blocks:
            for i, group in enumerate(GROUPS):
                m = groups[group]
                cells = "".join(" " + (f"{m[c]:8.4f}" if m.get(c) is not None else f"{'-':>8}") for c in cols)
                lines.append(f"  {name if i == 0 else '':<{width}}  {group:<5} {m['n']:>9,}{cells}")
    return "\n".join(lines)


def group_metrics(task: str, users: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> dict:
    """Metrics of one slice: AUC/GAUC/logloss for ctr, MAE/RMSE for rating (NaN -> None in JSON)."""
    out: dict[str, float | int | None] = {"n": int(len(labels))}
    if task == C.TASK_CTR:
        out.update(auc=auc(labels, preds), gauc=gauc(users, labels, preds), logloss=logloss(labels, preds),
                   label_rate=float(labels.mean()) if len(labels) else float("nan"),
                   mean_pred=float(preds.mean()) if len(preds) else float("nan"))
    else:
        out.update(mae=mae(labels, preds), rmse=rmse(labels, preds))
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in out.items()}


def slice_metrics(task: str, users: np.ndarray, labels: np.ndarray, preds: np.ndarray,
                  cold: np.ndarray) -> dict:
    """{all, cold, warm} metrics of one domain (or of all domains of one task)."""
    masks = {"all": np.ones(len(labels), dtype=bool), "cold": cold, "warm": ~cold}
    return {g: group_metrics(task, users[m], labels[m], preds[m]) for g, m in masks.items()}


def evaluate(
    run: Path, data: Path, split: str = "test", device: str = "auto", batch_size: int = 8192
) -> dict:
    """Score `split` of dataset `data` with RUN/checkpoint.pt; writes RUN/eval_<split>.json and returns it."""
    run, data = Path(run), Path(data)
    dev = resolve_device(device)
    model, spec, meta = load_checkpoint(run / BEST, map_location=dev)
    tbl = read_split(data, split)
    if tbl.num_rows == 0:
        raise ValueError(f"{data}/{split}.parquet has no rows to evaluate")
    preds = predict(model, spec, tbl, batch_size=batch_size, device=dev)
    domains = tbl.column(C.DOMAIN).to_numpy(zero_copy_only=False).astype(str)
    users = tbl.column(C.USER_ID).to_numpy()
    labels = tbl.column(C.LABEL).to_numpy(zero_copy_only=False).astype(np.float64)
    if C.IS_COLD not in tbl.column_names:
        raise ValueError(f"{data}/{split}.parquet lacks column {C.IS_COLD!r} needed for the cold/warm split")
    cold = tbl.column(C.IS_COLD).to_numpy(zero_copy_only=False).astype(bool)
    per_domain = {}
    for d in sorted({str(x) for x in np.unique(domains)}):
        m = domains == d
        per_domain[d] = slice_metrics(spec.domain_tasks[d], users[m], labels[m], preds[m], cold[m])
    overall = {}
    for task in C.TASKS:
        m = np.isin(domains, [d for d in per_domain if spec.domain_tasks[d] == task])
        if m.any():
            overall[task] = slice_metrics(task, users[m], labels[m], preds[m], cold[m])
    result = {"run": str(run), "data": str(data), "split": split, "model_name": meta["model_name"],
              "rows": int(tbl.num_rows), "domains": per_domain, "overall": overall}
    path = eval_path(run, split)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return result
