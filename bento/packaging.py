"""Put a trained run into the BentoML model store as `dacdr-<domain>` and build its Bento.

The stored model is the run's self-describing checkpoint.pt plus a `dacdr.json` summary; its
labels and metadata carry the training data range, holdout AUC, feature-service version and the
base model it was fine-tuned from. `build_bento` makes Bento `dacdr-<domain>` whose service
(bento.service:DacdrService) rebuilds the model from that checkpoint alone.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bento.names import CHECKPOINT_FILE, model_name

SUMMARY_FILE = "dacdr.json"
SERVICE = "bento.service:DacdrService"
# the Bento's source: the service and the model/feature code it imports (no training entry point
# is called at serve time; the packages come whole because the service imports them by name)
BENTO_PACKAGES_SRC = ("bento", "models", "features")
BENTO_INCLUDE = ["bento/**/*.py", "models/**/*.py", "features/**/*.py", "features/feature_repo/*.yaml"]
BENTO_EXCLUDE = ["**/__pycache__"]
BENTO_PACKAGES = ["torch", "numpy", "pandas<3", "pyarrow", "feast[duckdb]==0.67.0", "bentoml>=1.4.40,<1.5"]


def project_root() -> Path:
    """The repository root (build context of every Bento)."""
    return Path(__file__).resolve().parents[1]


def _finite(value: Any) -> float | None:
    """A finite float, or None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def without_nulls(obj: Any) -> Any:
    """A JSON-like value with None entries dropped (BentoML metadata rejects None)."""
    if isinstance(obj, dict):
        return {str(k): without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [without_nulls(v) for v in obj if v is not None]
    return obj


def data_range(meta: dict[str, Any]) -> dict[str, Any]:
    """The training data range recorded in a checkpoint's meta (dataset path and its days)."""
    manifest = meta.get("manifest") or {}
    days = {k: v for k, v in manifest.items() if "day" in k or k in ("start", "end", "splits")}
    return {"dataset": meta.get("data"), **days}


def save_model(
    run_dir: Path | str,
    domain: str,
    *,
    base_model: str | None = None,
    holdout_auc: float | None = None,
    dataset_dir: Path | str | None = None,
) -> str:
    """Store RUN_DIR/checkpoint.pt as a new version of `dacdr-<domain>`; returns the model tag.

    The checkpoint is loaded first (a broken one never reaches the store) and must know `domain`.
    `holdout_auc` defaults to the checkpoint's AUC on the domain's test rows of `dataset_dir`
    (default: the dataset the run was trained on, when it still exists); `base_model` defaults to
    the checkpoint meta's `base_model`.
    """
    import bentoml

    from bento.rollout import holdout_auc as make_holdout_auc
    from features.feature_repo.services import DACDR_V1
    from models.checkpoint import load_checkpoint

    name = model_name(domain)
    ckpt = Path(run_dir) / CHECKPOINT_FILE
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint in run dir {run_dir}")
    _, spec, meta = load_checkpoint(ckpt, "cpu")
    if domain not in spec.domain_tasks:
        known = sorted(spec.domain_tasks)
        raise ValueError(f"{ckpt}: model was not trained for domain {domain!r} (knows {known})")
    base = base_model or meta.get("base_model")
    data = Path(dataset_dir) if dataset_dir else (Path(meta["data"]) if meta.get("data") else None)
    auc = _finite(holdout_auc)
    if auc is None and data is not None and (data / "test.parquet").is_file():
        auc = make_holdout_auc(data, "test", domain)(ckpt)
    summary = {
        "domain": domain,
        "task": spec.domain_tasks[domain],
        "model_name": meta.get("model_name"),
        "training_data": data_range(meta),
        "holdout_auc": auc,
        "validation": {"metric": meta.get("val_metric"), "value": _finite(meta.get("val_value"))},
        "feature_service": DACDR_V1,
        "base_model": base,
        "run_dir": str(Path(run_dir).resolve()),
        "created": meta.get("created"),
    }
    labels = {
        "domain": domain,
        "model": str(meta.get("model_name", "")),
        "feature_service": DACDR_V1,
        "base_model": str(base or "none"),
    }
    metadata = without_nulls(json.loads(json.dumps(summary, default=str)))
    with bentoml.models.create(name, labels=labels, metadata=metadata) as stored:
        shutil.copy2(ckpt, stored.path_of(CHECKPOINT_FILE))
        Path(stored.path_of(SUMMARY_FILE)).write_text(json.dumps(metadata, indent=2))
    return str(stored.tag)


def build_bento(
    domain: str,
    model_tag: str | None = None,
    *,
    feast_repo: Path | str | None = None,
    version: str | None = None,
) -> str:
    """Build Bento `dacdr-<domain>` serving `model_tag` (default: production, else latest); returns its tag.

    The domain and model tag are stored as Bento arguments; `feast_repo` becomes the default
    feature-store location, which DACDR_FEAST_REPO overrides at serve time.
    """
    import bentoml

    from bento.config import ARG_DOMAIN, ARG_FEAST_REPO, ARG_MODEL_TAG, resolve_model_tag

    name = model_name(domain)
    tag = str(bentoml.models.get(resolve_model_tag(domain, model_tag)).tag)
    if not tag.startswith(f"{name}:"):
        raise ValueError(f"model {tag} is not a model of domain {domain!r}")
    args: dict[str, str] = {ARG_DOMAIN: domain, ARG_MODEL_TAG: tag}
    if feast_repo is not None:
        args[ARG_FEAST_REPO] = str(Path(feast_repo).resolve())
    # a build context holding only the three packages: BentoML walks every file under the context
    # (the repo's .venv alone is ~60k files)
    with tempfile.TemporaryDirectory(prefix="dacdr-bento-") as ctx:
        for pkg in BENTO_PACKAGES_SRC:
            shutil.copytree(
                project_root() / pkg, Path(ctx) / pkg, ignore=shutil.ignore_patterns("__pycache__")
            )
        bento = bentoml.bentos.build(
            SERVICE,
            name=name,
            version=version,
            labels={"domain": domain, "model": tag},
            description=f"DACDR ranking service for domain {domain} (model {tag})",
            include=BENTO_INCLUDE,
            exclude=BENTO_EXCLUDE,
            python={"packages": BENTO_PACKAGES, "lock_packages": False},
            models=[tag],
            build_ctx=ctx,
            args=args,
        )
    return str(bento.tag)


def package(
    run_dir: Path | str, domain: str, *, base_model: str | None = None, feast_repo: Path | str | None = None
) -> tuple[str, str]:
    """save_model then build_bento for that model: (model tag, bento tag)."""
    tag = save_model(run_dir, domain, base_model=base_model)
    return tag, build_bento(domain, tag, feast_repo=feast_repo)
