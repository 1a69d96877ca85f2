"""Cold-start rating transfer (paper Table 3) on an Amazon (source, target) file pair or a rating zone.

Splits are written as JSON manifests beside the results, so a run can be repeated exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from models.experiments.common import Progress, Tensors, absent_signals, tune_and_train
from models.experiments.config import (
    COLDSTART_MODELS,
    COLDSTART_TRAIN_ROWS,
    JOINT,
    JOINT_HISTORY,
    RESULT_COLUMNS_RATING,
    TARGET,
    ExperimentConfig,
    check_config,
    check_run,
    quick_config,
)
from models.experiments.data import source_rows, zone_signals
from models.experiments.report import write_rating_report


def check_betas(betas: list[float]) -> None:
    """Fail before any training on an empty beta list or a beta outside (0, 1)."""
    if not betas:
        raise ValueError("no beta given; e.g. --beta 0.2 0.5 0.8")
    bad = [b for b in betas if not 0.0 < b < 1.0]
    if bad:
        raise ValueError(f"beta must be in (0, 1), got {bad}")


def coldstart_split(
    table: pd.DataFrame, source_users: np.ndarray, beta: float, seed: int, val_fraction: float
) -> dict[str, list[int]]:
    """Cold-start users: a fraction `beta` of the overlapping users (test); validation users: a share of
    the remaining overlapping users (their target rows are held out too, never the test users')."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    target_users = np.unique(table[C.USER_ID].to_numpy())
    overlap = np.intersect1d(target_users, np.unique(source_users))
    if len(overlap) < 3:
        raise ValueError(f"only {len(overlap)} users rate in both domains; the cold-start split needs >= 3")
    perm = np.random.default_rng(seed).permutation(overlap)
    n_test = max(1, int(round(beta * len(overlap))))
    rest = perm[n_test:]
    n_val = max(1, int(round(val_fraction * len(rest))))
    if n_val >= len(rest):
        raise ValueError(f"beta={beta} leaves {len(rest)} overlapping training users: too few to validate on")
    return {
        "test": sorted(perm[:n_test].tolist()),
        "validation": sorted(rest[:n_val].tolist()),
        "overlap": int(len(overlap)),
    }


SOURCE_HISTORIES = ("as-of", "full")


def _after(behaviors: pa.Table) -> datetime:
    """A UTC time one day after the last source behaviour (the source history is complete then)."""
    return pc.max(behaviors.column(C.EVENT_TIME)).as_py() + timedelta(days=1)


@dataclass(frozen=True)
class ZoneSummary:
    """What the report says of the data: domains, users, rows (as the importers' summaries)."""

    source_domain: str
    target_domain: str
    users: int
    overlap_users: int
    rows: dict[str, int]


def zone_summary(logs: Path) -> ZoneSummary:
    """The summary of a rating landing zone with one source and one target domain."""
    from features.dataset import read_domains
    from features.io import read_table

    doms = read_domains(logs).to_pandas()
    src = doms.loc[doms[C.ROLE] == C.ROLE_SOURCE, C.DOMAIN].tolist()
    tgt = doms.loc[doms[C.ROLE] == C.ROLE_TARGET, C.DOMAIN].tolist()
    if len(src) != 1 or len(tgt) != 1:
        raise ValueError(f"{logs}: the cold-start experiment needs one source and one target domain, "
                         f"found {src} and {tgt}")
    beh, imp = read_table(logs, C.BEHAVIORS), read_table(logs, C.IMPRESSIONS)
    bu, iu = np.unique(beh.column(C.USER_ID).to_numpy()), np.unique(imp.column(C.USER_ID).to_numpy())
    return ZoneSummary(src[0], tgt[0], len(np.union1d(bu, iu)), len(np.intersect1d(bu, iu)),
                       {C.BEHAVIORS: beh.num_rows, C.IMPRESSIONS: imp.num_rows})


def coldstart(
    source: Path | None,
    target: Path | None,
    out: Path,
    betas: list[float],
    seeds: int = 3,
    quick: bool = False,
    models: list[str] | None = None,
    cfg: ExperimentConfig | None = None,
    fmt: str | None = None,
    source_history: str = "as-of",
    logs: Path | None = None,
    resolution: str = "event",
) -> pd.DataFrame:
    """Cold-start rating transfer on an Amazon (source, target) file pair; writes results.csv, report.md,
    tuning.json and one split manifest per (beta, seed) under `out`. Returns the results frame.

    source_history: "as-of" (each target row sees the user's source ratings before its own day, as
    serving would) or "full" (every source rating of the user, as the MF bridges and the paper's
    protocol use them). Source training rows always see only their own earlier history.
    logs: a rating landing zone (e.g. `dacdr import interactions`) used instead of the (source, target) files.
    resolution: as-of histories cut at each target row's own event time ("event", what serving sees with
    pushed behaviour) or at its day's midnight ("day")."""
    from features.dataset import (
        DEFAULT_MAX_LEN,
        build_training_table,
        read_domains,
        spec_manifest,
        training_schema,
    )
    from features.importers import import_amazon
    from features.io import read_table
    from models.metrics import mae, rmse
    from models.predict import predict_tensors, resolve_device
    from models.spec import FeatureSpec

    out = Path(out)
    cfg = cfg or (quick_config() if quick else ExperimentConfig())
    names = list(models or COLDSTART_MODELS)
    check_run(names, COLDSTART_MODELS, seeds)
    check_config(cfg)
    check_betas(betas)
    if source_history not in SOURCE_HISTORIES:
        raise ValueError(f"source_history must be one of {SOURCE_HISTORIES}, got {source_history!r}")
    out.mkdir(parents=True, exist_ok=True)
    if logs is None:
        logs = out / "logs"
        summary = import_amazon(source, target, logs, fmt)
    else:
        logs = Path(logs)
        summary = zone_summary(logs)
    behaviors = read_table(logs, C.BEHAVIORS)
    # every target rating with its time-ordered source history (as of its event or day, or all of it)
    table = build_training_table(logs, history_at=None if source_history == "as-of" else _after(behaviors),
                                 resolution=resolution)
    # no pandas metadata: it would record ArrowDtype names that to_pandas cannot parse back
    arrow = pa.Table.from_pandas(table, schema=training_schema(table), preserve_index=False)
    arrow = arrow.replace_schema_metadata(None)
    src = source_rows(logs, arrow)
    # only built when a model trains on it (it needs the source snapshots)
    want_history = any(COLDSTART_TRAIN_ROWS[n] == JOINT_HISTORY for n in names)
    src_history = source_rows(logs, arrow, sequences=True) if want_history else None
    manifest = spec_manifest(read_domains(logs), DEFAULT_MAX_LEN)
    beh_users = behaviors.column(C.USER_ID).to_numpy()
    dev = resolve_device(cfg.device)
    user_col = arrow.column(C.USER_ID).to_numpy()
    rows, log, chosen = [], [], {}
    progress = Progress(len(betas) * seeds * len(names))
    for beta in betas:
        for seed in range(seeds):
            split = coldstart_split(table, beh_users, beta, seed, cfg.val_fraction)
            tag = f"beta{beta:g}_seed{seed}"
            (out / "splits").mkdir(exist_ok=True)
            (out / "splits" / f"{tag}.json").write_text(
                json.dumps(
                    {
                        "source": str(source or logs),
                        "target": str(target or logs),
                        "beta": beta,
                        "seed": seed,
                        "val_fraction": cfg.val_fraction,
                        **split,
                    }
                )
                + "\n"
            )
            is_test = np.isin(user_col, split["test"])
            is_val = np.isin(user_col, split["validation"])
            tr = arrow.filter(pa.array(~is_test & ~is_val))
            joint = pa.concat_tables([tr, src])
            spec = FeatureSpec.fit(joint, manifest)
            data = Tensors(
                spec,
                spec.tensorize(tr),
                spec.tensorize(joint),
                spec.tensorize(arrow.filter(pa.array(is_val))),
                summary.source_domain,
            )
            signals = zone_signals(spec, data.target, data.joint, summary.source_domain)
            rows_t = {TARGET: data.target, JOINT: data.joint}
            if src_history is not None:
                rows_t[JOINT_HISTORY] = spec.tensorize(pa.concat_tables([tr, src_history]))
            te = arrow.filter(pa.array(is_test))
            test_t = spec.tensorize(te)
            labels = te.column(C.LABEL).to_numpy().astype(np.float64)
            for name in names:
                train_t = rows_t[COLDSTART_TRAIN_ROWS[name]]
                key = f"{name}/beta{beta:g}"
                model, pt = tune_and_train(
                    name,
                    data,
                    train_t,
                    data.val,
                    cfg,
                    seed,
                    out / "runs" / name / tag,
                    False,
                    chosen.get(key),
                    log,
                )
                chosen.setdefault(key, pt)
                pred = predict_tensors(model, test_t, 8192, dev)
                rows.append(
                    {
                        "model": name,
                        "beta": beta,
                        "seed": seed,
                        "mae": mae(labels, pred),
                        "rmse": rmse(labels, pred),
                    }
                )
                progress.done(f"{name} beta {beta:g} seed {seed}", f"test RMSE {rows[-1]['rmse']:.4f}")
            pd.DataFrame(rows, columns=list(RESULT_COLUMNS_RATING)).to_csv(out / "results.csv", index=False)
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS_RATING))
    results.to_csv(out / "results.csv", index=False)
    (out / "tuning.json").write_text(json.dumps({"chosen": chosen, "log": log}, indent=2, default=str) + "\n")
    absent = {n: absent_signals(n, signals) for n in names}
    write_rating_report(results, out, cfg, quick, seeds, summary, log, signals, absent, source_history)
    return results
