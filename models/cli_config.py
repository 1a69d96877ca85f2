"""`dacdr train|finetune --config FILE`: training hyper-parameters from a YAML or TOML file.

Two sections, each optional; every key must be a field of the config it names:

    train:            # models.train.TrainConfig (epochs, batch_size, lr, weight_decay, patience, ...)
      epochs: 20
      lr: 0.001
    model:            # the zoo model's config (DACDRConfig for dacdr), its data-given sizes excepted
      embed_dim: 64
      use_item_attention: false

Precedence: the command's flags > the file > the dataclass defaults. The resolved values are saved as
RUN/config.json (same two sections, so `--config RUN/config.json` repeats the run).
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from dacdr.errors import UserError, existing_file

CONFIG_FILE = "config.json"
SECTIONS = ("train", "model")
OPTION = "--config"
# TrainConfig fields that are how a run is shown, not what it learns
NOT_HYPER = ("progress",)
_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def read_config(path: Path) -> dict[str, dict[str, Any]]:
    """The file's `train` and `model` sections ({} when absent); UserError naming a bad file or section."""
    existing_file(path, OPTION)
    try:
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            raw = tomllib.loads(text)
        else:  # .yaml, .yml, .json (YAML reads JSON)
            import yaml

            raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{OPTION} {path}: unreadable ({exc})") from None
    except Exception as exc:  # yaml.YAMLError, without quoting the file
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{OPTION} {path}: not valid YAML{where} ({getattr(exc, 'problem', exc)})") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UserError(f"{OPTION} {path}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise UserError(f"{OPTION} {path}: unknown section {unknown[0]!r}; expected {', '.join(SECTIONS)}")
    out: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        body = raw.get(section) or {}
        if not isinstance(body, dict):
            raise UserError(f"{OPTION} {path}: section {section!r} must be a mapping of field: value")
        out[section] = body
    return out


def _accepts(annotation: str, value: Any) -> bool:
    """Whether `value` fits a field annotation written as a string (int, float | None, list[int])."""
    hint = annotation.replace(" ", "")
    options = hint.split("|")
    if value is None:
        return "None" in options
    for option in options:
        if option in _SCALARS:
            kind = _SCALARS[option]
            if kind is bool:
                if isinstance(value, bool):
                    return True
            elif kind is float:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return True
            elif isinstance(value, kind) and not isinstance(value, bool):
                return True
        elif option.startswith("list[") and isinstance(value, list):
            inner = option[5:-1]
            if all(_accepts(inner, v) for v in value):
                return True
    return False


def _type_name(annotation: Any) -> str:
    """A field's annotation as a string (a `from __future__ import annotations` dataclass keeps strings)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "None")


def hyper_fields(config_cls: type, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Settable fields of a config dataclass -> annotation: those with a default (sizes have none)."""
    return {f.name: _type_name(f.type) for f in fields(config_cls)
            if (f.default is not MISSING or f.default_factory is not MISSING) and f.name not in exclude}


def check_section(values: dict[str, Any], allowed: dict[str, str], where: str) -> dict[str, Any]:
    """`values` if every key is an allowed field holding a value of its type, else UserError naming it."""
    for key, value in values.items():
        if key not in allowed:
            raise UserError(f"{OPTION}: unknown key {where}.{key}; known: {', '.join(sorted(allowed))}")
        if not _accepts(allowed[key], value):
            raise UserError(f"{OPTION}: {where}.{key} = {value!r}: expected {allowed[key]}")
    return values


def train_fields(train_cls: type, only: tuple[str, ...] | None = None) -> dict[str, str]:
    """The settable TrainConfig fields (all hyper-parameters, or `only` these for a narrower command)."""
    found = hyper_fields(train_cls, NOT_HYPER)
    return {k: v for k, v in found.items() if only is None or k in only}


def resolve(sections: dict[str, dict[str, Any]], flags: dict[str, Any], allowed: dict[str, str],
            defaults: dict[str, Any], model_fields: dict[str, str] | None,
            fixed: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(train values, model overrides): `defaults` < the file's `sections` < `flags` given (not None).

    `model_fields` None: the command takes no model section (fine-tuning keeps the base run's).
    `fixed`: the zoo entry's own settings (an ablation's switch), which the file may not contradict.
    """
    train = {**{k: defaults[k] for k in allowed}, **check_section(sections["train"], allowed, "train")}
    if model_fields is None and sections["model"]:
        raise UserError(f"{OPTION}: a model section does not apply here (the base run's model is kept)")
    model = dict(check_section(sections["model"], model_fields or {}, "model"))
    clash = sorted(k for k in model if k in (fixed or {}) and model[k] != (fixed or {})[k])
    if clash:
        key = clash[0]
        raise UserError(f"{OPTION}: model.{key} = {model[key]!r} contradicts this model's fixed setting "
                        f"{(fixed or {})[key]!r}")
    for key, value in flags.items():
        if value is not None:
            (train if key in allowed else model)[key] = value
    for key in ("epochs", "batch_size", "patience", "eval_batch_size", "max_batches_per_epoch"):
        if train.get(key) is not None and train[key] < 1:
            raise UserError(f"{OPTION} / flags: train.{key} = {train[key]}: must be >= 1")
    if "lr" in train and train["lr"] <= 0:
        raise UserError(f"--lr {train['lr']}: must be > 0")
    if train.get("weight_decay", 0) < 0:
        raise UserError(f"{OPTION}: train.weight_decay = {train['weight_decay']}: must be >= 0")
    return train, model


def save_config(run: Path, train: dict[str, Any], model: dict[str, Any]) -> Path:
    """Write RUN/config.json: the resolved `train` fields and `model` config (readable by --config)."""
    path = Path(run) / CONFIG_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"train": train, "model": model}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def model_config_of(run: Path, model_cls: type) -> dict[str, Any]:
    """The hyper-parameter fields of the model config a finished run saved in its checkpoint."""
    from models.checkpoint import load_file
    from models.train import BEST

    saved = load_file(Path(run) / BEST).get("config", {})
    return {k: saved[k] for k in hyper_fields(model_cls) if k in saved}
