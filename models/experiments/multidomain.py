"""Multi-domain CTR experiment (paper Table 2): every model on every target domain of a landing zone."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features import contract as C
from models.experiments.common import Progress, Tensors, _day_start_us, absent_signals, tune_and_train
from models.experiments.config import (
    CTR_MODELS,
    PER_DOMAIN,
    RESULT_COLUMNS_CTR,
    TRAIN_ROWS,
    ExperimentConfig,
    check_config,
    check_run,
    quick_config,
)
from models.experiments.data import source_domain_of, source_rows, zone_signals
from models.experiments.report import write_ctr_report


def ctr_metrics(users: np.ndarray, labels: np.ndarray, preds: np.ndarray, cold: np.ndarray) -> dict:
    """auc, logloss, gauc, auc_cold, auc_warm of one domain's test rows."""
    from models.metrics import auc, gauc, logloss

    return {
        "auc": auc(labels, preds),
        "logloss": logloss(labels, preds),
        "gauc": gauc(users, labels, preds),
        "auc_cold": auc(labels[cold], preds[cold]),
        "auc_warm": auc(labels[~cold], preds[~cold]),
    }


def multidomain(
    logs: Path,
    out: Path,
    seeds: int = 3,
    quick: bool = False,
    models: list[str] | None = None,
    cfg: ExperimentConfig | None = None,
    preset_note: str = "",
) -> pd.DataFrame:
    """Train every model (and DACDR's ablations) on every target domain; write results.csv, report.md,
    chart.png, tuning.json and split_manifest.json under `out`. Returns the results frame."""
    from features.dataset import build_dataset
    from models.predict import resolve_device
    from models.spec import FeatureSpec, read_manifest
    from models.train import read_split

    logs, out = Path(logs), Path(out)
    cfg = cfg or (quick_config() if quick else ExperimentConfig())
    names = list(models or CTR_MODELS)
    check_run(names, CTR_MODELS, seeds)
    check_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = build_dataset(
        logs, out / "dataset", burn_in_days=cfg.burn_in_days, resolution=cfg.sequence_resolution
    )
    manifest = read_manifest(data_dir)
    tr, va, te = (read_split(data_dir, s) for s in ("train", "validation", "test"))
    src = source_rows(logs, tr, before_us=_day_start_us(manifest["days"]["test"][0]))
    joint = pa.concat_tables([tr, src])
    spec = FeatureSpec.fit(joint, manifest)
    source_domain = source_domain_of(logs)[0]
    data = Tensors(spec, spec.tensorize(tr), spec.tensorize(joint), spec.tensorize(va), source_domain)
    signals = zone_signals(spec, data.target, data.joint, source_domain)
    test_t = spec.tensorize(te)
    targets = list(manifest["target_domains"])
    split = {
        "logs": str(logs),
        "days": manifest["days"],
        "rows": {**manifest["rows"], "source": src.num_rows},
        "source_domain": source_domain,
        "targets": targets,
        "seeds": list(range(seeds)),
        "config": asdict(cfg),
        "models": names,
        "signals": signals,
    }
    (out / "split_manifest.json").write_text(json.dumps(split, indent=2, default=str) + "\n")

    dev = resolve_device(cfg.device)
    t_dom = test_t["domain"].numpy()
    users = te.column(C.USER_ID).to_numpy()
    labels = te.column(C.LABEL).to_numpy().astype(np.float64)
    cold = te.column(C.IS_COLD).to_numpy(zero_copy_only=False).astype(bool)
    dom_idx = {d: int(spec.domains.lookup([d])[0]) for d in targets}
    rows, log, chosen = [], [], {}
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    te.select([C.REQUEST_ID, C.DOMAIN, C.USER_ID, C.LABEL, C.IS_COLD]).to_pandas().to_parquet(
        pred_dir / "test_rows.parquet", index=False
    )
    progress = Progress(seeds * len(names))
    for seed in range(seeds):
        for name in names:
            scores = score_model(name, data, test_t, targets, dom_idx, cfg, seed, out, chosen, log, dev)
            for d in targets:
                m = t_dom == dom_idx[d]
                rows.append({"model": name, "domain": d, "seed": seed,
                             **ctr_metrics(users[m], labels[m], scores[m], cold[m])})
            # test-row scores, for significance checks (bootstrap over users) beside the summary metrics
            np.save(pred_dir / f"{name}_seed{seed}.npy", scores)
            mine = [r["auc"] for r in rows if r["model"] == name and r["seed"] == seed]
            progress.done(f"{name} seed {seed}", f"test AUC {np.nanmean(mine):.4f} (domain mean)")
        pd.DataFrame(rows, columns=list(RESULT_COLUMNS_CTR)).to_csv(out / "results.csv", index=False)
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS_CTR))
    results.to_csv(out / "results.csv", index=False)
    (out / "tuning.json").write_text(json.dumps({"chosen": chosen, "log": log}, indent=2, default=str) + "\n")
    oracle = _oracle(logs, targets)
    absent = {n: absent_signals(n, signals) for n in names}
    write_ctr_report(results, oracle, out, cfg, quick, seeds, preset_note, log, signals, absent)
    return results


def score_model(
    name: str, data: Tensors, test_t: dict, targets: list[str], dom_idx: dict[str, int],
    cfg: ExperimentConfig, seed: int, out: Path, chosen: dict, log: list[dict], dev,
    train_rows: dict[str, str] = TRAIN_ROWS,
) -> np.ndarray:
    """Train `name` (one model for all targets, or one per domain) and score every test row with its
    domain's model; `chosen` / `log` collect the grid picks. Returns (rows,) float32 scores."""
    from models.predict import predict_tensors

    per_domain = train_rows[name] == PER_DOMAIN
    units = [(d, [d]) for d in targets] if per_domain else [("all", targets)]
    t_dom = test_t["domain"].numpy()
    scores = np.full(len(t_dom), np.nan, np.float32)
    for unit, doms in units:
        key = f"{name}/{unit}"
        if per_domain:
            train_t = {k: v[data.target["domain"] == dom_idx[unit]] for k, v in data.target.items()}
            val_t = {k: v[data.val["domain"] == dom_idx[unit]] for k, v in data.val.items()}
        else:
            train_t, val_t = data.rows(train_rows[name]), data.val
        run = out / "runs" / name / unit / f"seed{seed}"
        model, pt = tune_and_train(name, data, train_t, val_t, cfg, seed, run, True, chosen.get(key), log)
        chosen.setdefault(key, pt)
        pred = predict_tensors(model, test_t, 8192, dev)
        for d in doms:
            m = t_dom == dom_idx[d]
            scores[m] = pred[m]
    return scores


def _oracle(logs: Path, targets: list[str]) -> dict[str, float]:
    """The simulator's oracle AUC per target domain ({} when the zone has no _truth)."""
    from features import simulator
    from models.oracle import oracle_auc

    if not (logs / simulator.TRUTH_DIR / simulator.MANIFEST).is_file():
        return {}
    return oracle_auc(logs, targets)
