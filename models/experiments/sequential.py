"""Leave-last-out ranking on an implicit landing zone (`dacdr import c2dsr|interactions`): every zoo model.

Protocol (the one sequential cross-domain papers use): each user's last target request (1 positive + the
importer's sampled negatives, 99 by default) is the test request, the one before it validation, the earlier
ones (1 positive + 4 negatives each) training. Source histories are cut at each request's own event time.
Models that learn from source examples get each user's source clicks (+ sampled negatives) from before that
user's test request; DACDR's carry the user's own earlier source history (RANKING_TRAIN_ROWS).
Metrics on test: AUC over all rows, GAUC (per user), NDCG@10 and HR@10 of the positive among its request.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features import contract as C
from models.experiments.common import Progress, Tensors, absent_signals
from models.experiments.config import (
    CTR_MODELS,
    JOINT_HISTORY,
    RANKING_TRAIN_ROWS,
    ExperimentConfig,
    check_config,
    check_run,
    quick_config,
)
from models.experiments.data import source_domain_of, source_rows, zone_signals
from models.experiments.multidomain import score_model

K = 10
RESULT_COLUMNS: tuple[str, ...] = ("model", "domain", "seed", "auc", "gauc", "ndcg10", "hr10", "logloss")


def positive_rank(requests: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(R,) 1-based rank of each request's positive among its rows (ties count half), in request order.

    Each request must hold exactly one positive (label > 0.5)."""
    _, req = np.unique(requests, return_inverse=True)
    req = req.ravel()
    pos = labels > 0.5
    if np.bincount(req, weights=pos.astype(np.float64)).tolist() != [1.0] * (req.max() + 1):
        raise ValueError("every request needs exactly one positive row")
    pos_score = np.zeros(req.max() + 1)
    pos_score[req[pos]] = scores[pos]
    neg = ~pos
    above = np.bincount(req[neg], weights=(scores[neg] > pos_score[req[neg]]).astype(np.float64),
                        minlength=len(pos_score))
    ties = np.bincount(req[neg], weights=(scores[neg] == pos_score[req[neg]]).astype(np.float64),
                       minlength=len(pos_score))
    return 1.0 + above + 0.5 * ties


def ndcg_hr(rank: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Per request NDCG@k (one relevant item: 1 / log2(1 + rank)) and HR@k (rank <= k)."""
    hit = rank <= k
    return np.where(hit, 1.0 / np.log2(1.0 + rank), 0.0), hit.astype(np.float64)


def split_leave_last_out(table: pd.DataFrame) -> np.ndarray:
    """Per row: "test" (the user's last request), "validation" (the one before), else "train"."""
    req = table[[C.REQUEST_ID, C.USER_ID, C.EVENT_TIME]].drop_duplicates(C.REQUEST_ID)
    req = req.sort_values([C.USER_ID, C.EVENT_TIME, C.REQUEST_ID], kind="stable")
    from_end = req.groupby(C.USER_ID).cumcount(ascending=False).to_numpy()
    which = pd.Series(np.where(from_end == 0, "test", np.where(from_end == 1, "validation", "train")),
                      index=req[C.REQUEST_ID].to_numpy())
    return which.reindex(table[C.REQUEST_ID].to_numpy()).to_numpy()


def _before_own_test(src: pa.Table, te: pa.Table) -> pa.Table:
    """Source examples of each user from before that user's own test request (none from after it)."""
    t = te.select([C.USER_ID, C.EVENT_TIME]).group_by(C.USER_ID).aggregate([(C.EVENT_TIME, "min")])
    pos = pa.compute.index_in(src.column(C.USER_ID), t.column(C.USER_ID))
    limit = pa.compute.take(t.column(f"{C.EVENT_TIME}_min"), pos)
    keep = pa.compute.fill_null(pa.compute.less(src.column(C.EVENT_TIME), limit), False)
    return src.filter(keep)


def leave_last_out(
    logs: Path, out: Path, seeds: int = 3, quick: bool = False, models: list[str] | None = None,
    cfg: ExperimentConfig | None = None,
) -> pd.DataFrame:
    """Train every model on the zone's training requests; write results.csv, report.md, predictions/."""
    from features.dataset import (
        DEFAULT_MAX_LEN,
        build_training_table,
        read_domains,
        spec_manifest,
        training_schema,
    )
    from models.metrics import auc, gauc, logloss
    from models.predict import resolve_device
    from models.spec import FeatureSpec

    logs, out = Path(logs), Path(out)
    cfg = cfg or (quick_config() if quick else ExperimentConfig(sequence_resolution="event"))
    names = list(models or CTR_MODELS)
    check_run(names, CTR_MODELS, seeds)
    check_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    table = build_training_table(logs, resolution=cfg.sequence_resolution)
    which = split_leave_last_out(table)
    arrow = pa.Table.from_pandas(table, schema=training_schema(table), preserve_index=False)
    arrow = arrow.replace_schema_metadata(None)
    tr, va, te = (arrow.filter(pa.array(which == s)) for s in ("train", "validation", "test"))
    src = _before_own_test(source_rows(logs, tr), te)
    joint = pa.concat_tables([tr, src])
    want_history = any(RANKING_TRAIN_ROWS[n] == JOINT_HISTORY for n in names)
    manifest = spec_manifest(read_domains(logs), DEFAULT_MAX_LEN)
    spec = FeatureSpec.fit(joint, manifest)
    source_domain = source_domain_of(logs)[0]
    data = Tensors(spec, spec.tensorize(tr), spec.tensorize(joint), spec.tensorize(va), source_domain)
    if want_history:  # source examples with the user's own earlier source history (as of their time)
        hist = _before_own_test(source_rows(logs, tr, sequences=True), te)
        data.joint_history = spec.tensorize(pa.concat_tables([tr, hist]))
    signals = zone_signals(spec, data.target, data.joint, source_domain)
    test_t = spec.tensorize(te)
    targets = [d for d, v in manifest["domains"].items() if v[C.ROLE] == C.ROLE_TARGET]
    dom_idx = {d: int(spec.domains.lookup([d])[0]) for d in targets}
    n_rows = {"train": tr.num_rows, "validation": va.num_rows, "test": te.num_rows, "source": src.num_rows}
    split = {"logs": str(logs), "rows": n_rows,
             "test_requests": int(pd.unique(te.column(C.REQUEST_ID).to_numpy(zero_copy_only=False)).size),
             "source_domain": source_domain, "targets": targets, "seeds": list(range(seeds)),
             "config": asdict(cfg), "models": names, "signals": signals}
    (out / "split_manifest.json").write_text(json.dumps(split, indent=2, default=str) + "\n")

    dev = resolve_device(cfg.device)
    t_dom = test_t["domain"].numpy()
    requests = te.column(C.REQUEST_ID).to_numpy(zero_copy_only=False)
    users = te.column(C.USER_ID).to_numpy()
    labels = te.column(C.LABEL).to_numpy().astype(np.float64)
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    te.select([C.REQUEST_ID, C.DOMAIN, C.USER_ID, C.LABEL]).to_pandas().to_parquet(
        pred_dir / "test_rows.parquet", index=False)
    rows, log, chosen = [], [], {}
    progress = Progress(seeds * len(names))
    for seed in range(seeds):
        for name in names:
            scores = score_model(name, data, test_t, targets, dom_idx, cfg, seed, out, chosen, log, dev,
                                 RANKING_TRAIN_ROWS)
            np.save(pred_dir / f"{name}_seed{seed}.npy", scores)
            for d in targets:
                m = t_dom == dom_idx[d]
                ndcg, hr = ndcg_hr(positive_rank(requests[m], labels[m], scores[m]))
                probs = 1.0 / (1.0 + np.exp(-scores[m].astype(np.float64)))
                rows.append({"model": name, "domain": d, "seed": seed, "auc": auc(labels[m], scores[m]),
                             "gauc": gauc(users[m], labels[m], scores[m]), "ndcg10": float(ndcg.mean()),
                             "hr10": float(hr.mean()), "logloss": logloss(labels[m], probs)})
            last = rows[-1]
            progress.done(f"{name} seed {seed}", f"AUC {last['auc']:.4f} NDCG@10 {last['ndcg10']:.4f}")
        pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(out / "results.csv", index=False)
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    results.to_csv(out / "results.csv", index=False)
    (out / "tuning.json").write_text(json.dumps({"chosen": chosen, "log": log}, indent=2, default=str) + "\n")
    absent = {n: absent_signals(n, signals) for n in names}
    write_ranking_report(results, out, seeds, split, absent)
    return results


def paired_user_se(out: Path, a: str, b: str, seeds: int) -> tuple[float, float]:
    """Mean and s.e. over test users of NDCG@10(a) - NDCG@10(b), each user's NDCG averaged over seeds."""
    rows = pd.read_parquet(out / "predictions" / "test_rows.parquet")
    req, lab = rows[C.REQUEST_ID].to_numpy(), rows[C.LABEL].to_numpy()

    def per_request(name: str) -> np.ndarray:
        runs = [np.load(out / "predictions" / f"{name}_seed{s}.npy") for s in range(seeds)]
        return np.mean([ndcg_hr(positive_rank(req, lab, r))[0] for r in runs], axis=0)

    d = per_request(a) - per_request(b)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def write_ranking_report(results: pd.DataFrame, out: Path, seeds: int, split: dict,
                         absent: dict[str, list[str]]) -> Path:
    """report.md: per model mean ± s.e. over seeds of each metric, and DACDR minus the best other model
    with the s.e. over users (paired)."""
    g = results.groupby("model", sort=False)
    mean, se = g.mean(numeric_only=True), g.std(numeric_only=True) / np.sqrt(max(seeds, 1))
    title = f"{split['source_domain']} -> {', '.join(split['targets'])}"
    lines = [f"# Leave-last-out ranking: {title}", "",
             f"{split['test_requests']} test requests (1 positive + sampled negatives), "
             f"rows {split['rows']}; "
             f"{seeds} seeds, mean ± s.e. over seeds.", "",
             "| model | AUC | GAUC | NDCG@10 | HR@10 |", "|---|---|---|---|---|"]
    for m in mean.index:
        cells = [f"{mean.loc[m, c]:.4f} ± {se.loc[m, c]:.4f}" if seeds > 1 else f"{mean.loc[m, c]:.4f}"
                 for c in ("auc", "gauc", "ndcg10", "hr10")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    others = [m for m in mean.index if not m.startswith("dacdr")]
    if "dacdr" in mean.index and others:
        best = mean.loc[others, "ndcg10"].idxmax()
        diff, dse = paired_user_se(out, "dacdr", best, seeds)
        lines += ["", f"DACDR minus the best other model by NDCG@10 ({best}): {diff:+.4f} "
                  f"(s.e. over test users {dse:.4f}, {diff / dse if dse else float('nan'):+.1f} s.e.)."]
    notes = [f"- {m}: {line}" for m, ls in absent.items() for line in ls]
    if notes:
        lines += ["", "Absent signals:", *notes]
    lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
