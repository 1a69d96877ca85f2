"""Serving configuration: environment settings, Bento arguments, the model tag, the start-up check.

A Bento `dacdr-<domain>` is built by `bento.packaging.build_bento`, which stores the domain and
the model tag as Bento arguments (`bentoml.use_arguments`); serving from source reads the same
keys from environment variables instead. The feature store location is runtime configuration:

    DACDR_DOMAIN          target domain (the Bento argument `domain` wins when present)
    DACDR_MODEL_TAG       model store tag (overrides the Bento argument `model_tag`; default: the
                          domain's production model in the rollout registry, else dacdr-<domain>:latest)
    DACDR_FEAST_REPO      Feast working directory of the online store (overrides the Bento
                          argument `feast_repo`, the default recorded at build time)
    DACDR_MAX_CANDIDATES  cap on item_ids per query (default 1000; read when the module loads,
                          so it is part of the request schema and of the OpenAPI document)
    DACDR_BATCH_MAX_LATENCY_MS  adaptive-batching latency budget of /rank_batch (default 30000;
                          read when the module loads; short budgets shed load as 503s, see
                          docs/serving.md)
    DACDR_MAX_BODY_BYTES  largest request body accepted (default 1 MiB); larger ones get 413
    DACDR_ONLINE_BUSY_TIMEOUT_MS  how long a read waits for a locked SQLite online store before
                          the request gets 503 (default 200)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bento.names import MODEL_PREFIX, domain_checkpoint

ENV_DOMAIN = "DACDR_DOMAIN"
ENV_MODEL_TAG = "DACDR_MODEL_TAG"
ENV_FEAST_REPO = "DACDR_FEAST_REPO"
ENV_MAX_CANDIDATES = "DACDR_MAX_CANDIDATES"
ENV_BATCH_MAX_LATENCY_MS = "DACDR_BATCH_MAX_LATENCY_MS"
ENV_MAX_BODY_BYTES = "DACDR_MAX_BODY_BYTES"
ENV_ONLINE_BUSY_TIMEOUT_MS = "DACDR_ONLINE_BUSY_TIMEOUT_MS"
DEFAULT_MAX_CANDIDATES = 1000
# 1000 candidates of 19-digit ids are ~20 kB; a 64-query batch of them ~1.3 MB would be refused,
# so the default leaves room for ~50 full queries per body and DACDR_MAX_BODY_BYTES raises it
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_ONLINE_BUSY_TIMEOUT_MS = 200
DEFAULT_BATCH_MAX_LATENCY_MS = 30_000  # = the traffic timeout: never shed a request that could still finish
BATCH_MAX_QUERIES = 64
# Bento argument keys written by bento.packaging.build_bento
ARG_DOMAIN = "domain"
ARG_MODEL_TAG = "model_tag"
ARG_FEAST_REPO = "feast_repo"
SERVICE_NAME = "dacdr"
ENV_BENTOML_OVERRIDES = "BENTOML_CONFIG_OVERRIDES"  # BentoML's JSON config override, read by `bentoml serve`


def read_positive_int(environ: dict[str, str] | os._Environ[str], name: str, default: int) -> int:
    """A positive integer setting from the environment; ValueError naming the variable when bad."""
    raw = environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


MAX_CANDIDATES = read_positive_int(os.environ, ENV_MAX_CANDIDATES, DEFAULT_MAX_CANDIDATES)
BATCH_MAX_LATENCY_MS = read_positive_int(os.environ, ENV_BATCH_MAX_LATENCY_MS, DEFAULT_BATCH_MAX_LATENCY_MS)
MAX_BODY_BYTES = read_positive_int(os.environ, ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)
API_PATHS = ("/rank", "/rank_batch")
# under "bentoml" so that the server's log configuration (handlers, INFO level) applies to it
logger = logging.getLogger("bentoml.dacdr")


def workers_env(environ: dict[str, str], workers: int) -> dict[str, str]:
    """`environ` plus the BentoML override that runs `workers` worker processes of this service.

    Each worker runs torch on one thread (Ranker.load), so N workers use N cores: N = the cores the
    server may take. Other overrides already in the variable are kept.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    raw = environ.get(ENV_BENTOML_OVERRIDES, "").strip()
    try:
        overrides = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_BENTOML_OVERRIDES} is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"{ENV_BENTOML_OVERRIDES} must be a JSON object, got {raw!r}")
    service = overrides.setdefault("services", {}).setdefault(SERVICE_NAME, {})
    service["workers"] = workers
    return {**environ, ENV_BENTOML_OVERRIDES: json.dumps(overrides)}


def resolve_model_tag(domain: str, model_tag: str | None) -> str:
    """The tag to serve: the given one, else the registry's production model, else the latest."""
    if model_tag:
        return model_tag
    from bento.rollout import production_model

    return production_model(domain) or f"{MODEL_PREFIX}{domain}:latest"


@dataclass(frozen=True)
class ServeConfig:
    """Everything a service process needs to know, resolved once at start."""

    domain: str
    model_tag: str | None
    feast_workdir: Path


def resolve_config(args: dict[str, Any], environ: dict[str, str]) -> ServeConfig:
    """Merge Bento arguments and environment variables; ValueError naming what is missing/bad."""
    from features import contract as C

    domain = str(args.get(ARG_DOMAIN) or environ.get(ENV_DOMAIN) or "")
    if not domain:
        raise ValueError(f"no domain: build the Bento with `dacdr package` or set {ENV_DOMAIN}")
    C.check_domain_name(domain)
    workdir = environ.get(ENV_FEAST_REPO) or args.get(ARG_FEAST_REPO)
    if not workdir:
        raise ValueError(f"no feature store: set {ENV_FEAST_REPO} to the Feast working directory")
    tag = environ.get(ENV_MODEL_TAG) or args.get(ARG_MODEL_TAG) or None
    return ServeConfig(domain=domain, model_tag=tag, feast_workdir=Path(str(workdir)))


def preflight(args: dict[str, Any], environ: dict[str, str]) -> ServeConfig:
    """Check what a worker needs before any starts: configuration, the model, the online store.

    Raises ValueError, bentoml's NotFound or FeatureStoreError with a one-line message.
    """
    import bentoml

    from features import store as fs

    config = resolve_config(args, environ)
    tag = resolve_model_tag(config.domain, config.model_tag)
    stored = bentoml.models.get(tag)
    domain_checkpoint(stored, config.domain)  # ModelMismatch (a ValueError) names the problem
    if not fs.repo_dir(config.feast_workdir).is_dir():
        raise fs.FeatureStoreError(f"{config.feast_workdir}: no feature store; set {ENV_FEAST_REPO}")
    fs.check_online_store(config.feast_workdir)
    return config
