"""Names of a domain's model in the BentoML model store: one place for the prefix, the file and the check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from features import contract as C
from models.run_dir import BEST as CHECKPOINT_FILE  # the run's checkpoint, copied into the stored model

MODEL_PREFIX = "dacdr-"  # a domain's models and Bento are named dacdr-<domain>


class ModelMismatch(ValueError):
    """A stored model that is not a servable model of the domain asked for."""


def model_name(domain: str) -> str:
    """The model store / Bento name of a domain."""
    return f"{MODEL_PREFIX}{C.check_domain_name(domain)}"


def domain_checkpoint(stored: Any, domain: str) -> Path:  # noqa: ANN401  # a bentoml.Model
    """The checkpoint of a stored model; ModelMismatch when it is another domain's or has none."""
    if stored.tag.name != f"{MODEL_PREFIX}{domain}":
        raise ModelMismatch(f"model {stored.tag} is not a model of domain {domain!r}")
    path = Path(stored.path_of(CHECKPOINT_FILE))
    if not path.is_file():
        raise ModelMismatch(f"model {stored.tag} has no {CHECKPOINT_FILE}; package it again")
    return path
