"""Self-describing checkpoints: config, feature spec, weights and metadata, readable with weights_only=True.

Layout of checkpoint.pt (a plain dict):
    format      "dacdr-checkpoint/2" (2: sequences carry behaviour-value tokens; /1 files must be retrained)
    model_name  zoo key, e.g. "dacdr"
    config      the model config as a dict
    spec        FeatureSpec.to_state() (vocabularies as int64 tensors / lists of str)
    state_dict  model weights
    meta        dict of str/int/float/list/dict: data days, val metric, epoch, seed, ...
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.spec import FeatureSpec
from models.zoo import get_entry

FORMAT = "dacdr-checkpoint/2"
# formats this version cannot rebuild, and why (a clear error instead of a state-dict mismatch)
RETIRED_FORMATS: dict[str, str] = {
    "dacdr-checkpoint/1": "written before sequences carried behaviour-value tokens (seq_<behavior>_value)",
}


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read back: empty, truncated or not a torch file."""


def fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temp file beside `path`, fsync it, rename, fsync the folder.

    Never a half-written checkpoint: without the fsyncs a crash after the rename can leave a
    0-byte or truncated file under the final name (the rename reaches the disk before the data).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def load_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load(weights_only=True) of a checkpoint or last.pt; CheckpointError naming a damaged file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    size = path.stat().st_size
    advice = "delete it and retrain (or restore it from a copy)"
    if size == 0:
        raise CheckpointError(f"{path}: damaged checkpoint (0 bytes, an interrupted write); {advice}")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning: the error below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused(str(exc))
        if refused is not None:  # torch's weights-only unpickler stopped it: never unpickled, never run
            raise CheckpointError(f"{path}: refused: {refused}; not a dacdr checkpoint") from None
        raise CheckpointError(f"{path}: damaged checkpoint ({size} bytes, unreadable); {advice}") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        # torch reports truncation as a zip reader RuntimeError ("failed finding central directory")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: damaged checkpoint ({size} bytes, truncated or not a torch file: {first}); {advice}"
        ) from None


_PICKLE_OPCODES = {op.code for op in pickletools.opcodes}


def _refused(message: str) -> str | None:
    """Why torch's weights_only=True unpickler refused a file, in one line; None if it did not refuse."""
    if "Weights only load failed" not in message and "Unsupported global" not in message:
        return None
    found = re.search(r"(?i)unsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)", message)
    if found:
        name = found.group(1)
        return f"it asks to load {name}, which weights_only=True does not allow (a pickle could run it)"
    found = re.search(r"Unsupported operand (\d+)", message)
    if found is None:
        return "weights_only=True does not load what it holds"
    if chr(int(found.group(1))) not in _PICKLE_OPCODES:
        return None  # not pickle at all: garbage bytes, i.e. damaged
    return f"pickle opcode {found.group(1)}, which weights_only=True does not allow (not a torch file)"


def checkpoint_dict(model: nn.Module, model_name: str, spec: FeatureSpec, meta: dict) -> dict:
    """The checkpoint payload of a model (weights copied to CPU)."""
    return {
        "format": FORMAT,
        "model_name": model_name,
        "config": model.cfg.to_dict(),
        "spec": spec.to_state(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": meta,
    }


def save_checkpoint(path: Path, model: nn.Module, model_name: str, spec: FeatureSpec, meta: dict) -> Path:
    """Write a self-describing checkpoint atomically."""
    return atomic_save(checkpoint_dict(model, model_name, spec, meta), path)


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, FeatureSpec, dict]:
    """(model in eval mode, spec, meta) rebuilt from the checkpoint alone (torch.load weights_only)."""
    path = Path(path)
    ck = load_file(path, map_location)
    fmt = ck.get("format") if isinstance(ck, dict) else None
    if fmt in RETIRED_FORMATS:
        raise ValueError(f"{path}: a {fmt} checkpoint, {RETIRED_FORMATS[fmt]}; retrain it with this version")
    if fmt != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    entry = get_entry(ck["model_name"])
    model = entry.build(entry.config_from_dict(ck["config"]))
    model.load_state_dict(ck["state_dict"])
    model.to(map_location).eval()
    meta = {**ck["meta"], "model_name": ck["model_name"]}
    return model, FeatureSpec.from_state(ck["spec"]), meta
