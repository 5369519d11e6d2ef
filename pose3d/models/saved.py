"""Models saved in pose3d checkpoints: what a checkpoint must hold to be rebuilt, and the
one call that rebuilds it.

A checkpoint is one `torch.save` dict with at least `model` (the state dict) and
`fingerprint` = {class, arch, shapes}. `arch` holds exactly the arguments of
`pose3d.models.build_model` (`kind` plus the constructor's keyword arguments, without
initial-weight paths), so whoever needs the model calls `load_model(path)`: eval, the P-GT
stage, the benchmarks and `pose3d predict` alike (nanoGPT's habit). Writing checkpoints
(atomic saves, `latest.pt`, keeping the last K) is the trainer's job: pose3d.train.checkpoint.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from pose3d.models.build import build_model


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or written for another model."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written: a full disk, a quota, a folder made read-only
    (the commands end in one line for it: pose3d.cli.storage_failure)."""


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct

# Beyond tensors and plain containers (which weights_only loading takes as they are), our
# checkpoints hold one thing: the numpy generator state in `rng` (np.random.get_state(): a
# uint32 array). These rebuild arrays and nothing else; every other global in the file is
# refused before anything runs (users load checkpoints they downloaded).
_SAFE_GLOBALS: list = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
if torch.__version__ >= (2, 6):  # (function, name): numpy 1 and 2 name it differently
    _SAFE_GLOBALS += [(_reconstruct, f"{module}.multiarray._reconstruct")
                      for module in ("numpy.core", "numpy._core")]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def fingerprint(model: nn.Module, arch: dict) -> dict:
    """What must match for a checkpoint to load: class, `arch` (build_model's arguments),
    and a hash of the parameter names and shapes."""
    model = unwrap(model)
    shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return {"class": type(model).__name__, "arch": dict(arch),
            "shapes": hashlib.sha1(shapes.encode()).hexdigest()[:16]}


def _describe(fp: dict) -> str:
    arch = ", ".join(f"{k}={v}" for k, v in sorted(fp.get("arch", {}).items()))
    return f"{fp.get('class', '?')}({arch})"


def check_fingerprint(found: dict | None, expected: dict, path: str | Path) -> None:
    """CheckpointError (one line) unless the checkpoint at `path` holds the expected model."""
    if not found:
        raise CheckpointError(f"{path} is not a pose3d checkpoint (no model fingerprint)")
    if found["class"] != expected["class"] or found["arch"] != expected["arch"] \
            or found["shapes"] != expected["shapes"]:
        raise CheckpointError(f"checkpoint {path} holds {_describe(found)}, but this run builds "
                              f"{_describe(expected)}")


def _refusal(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    """One line from torch's many-line weights-only refusal: the global it refused, or the
    reason it stopped."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", text)
    if found:
        return CheckpointError(f"refusing checkpoint {path}: it holds "
                               f"{found.group(1) or found.group(2)}, which a pose3d checkpoint "
                               f"never holds (loading it could run code)")
    reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    return CheckpointError(f"cannot read checkpoint {path}: not a file of tensors and plain "
                           f"data ({reason.group(1).strip() if reason else 'unpickling failed'})")


def _load_weights_only(path: Path, map_location: str | torch.device) -> object:
    if not hasattr(torch.serialization, "safe_globals"):  # torch 2.4: no scoped allow-list
        torch.serialization.add_safe_globals(_SAFE_GLOBALS)
        return torch.load(path, map_location=map_location, weights_only=True)
    with torch.serialization.safe_globals(_SAFE_GLOBALS):
        return torch.load(path, map_location=map_location, weights_only=True)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint file without running code: tensors, plain data and numpy arrays
    only (torch's weights-only unpickler). CheckpointError (one line naming the file) when
    it is missing, unreadable or holds anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = _load_weights_only(path, map_location)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except Exception as exc:  # noqa: BLE001 - any reading failure means the same thing
        text = str(exc).strip()
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: "
                              f"{text.splitlines()[0] if text else ''}") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path} is not a pose3d checkpoint (no 'model' entry)")
    return obj


@dataclass
class SavedModel:
    """A model rebuilt from a checkpoint, in eval mode, and what else the checkpoint holds."""

    model: nn.Module
    arch: dict  # build_model's arguments, `kind` included
    config: dict  # the training config the checkpoint was written with ({} when absent)
    checkpoint: dict  # the whole checkpoint dict (step, optimizer state, ...)

    @property
    def kind(self) -> str:
        return self.arch["kind"]


def load_model(path: str | Path, device: str | torch.device = "cpu",
               kind: str | None = None) -> SavedModel:
    """Rebuild the model a pose3d checkpoint holds, load its weights, move it to `device`
    and put it in eval mode. `kind` ("single_view" or "multi_view"), when given, is checked:
    another model's checkpoint is a CheckpointError naming what it holds."""
    ckpt = read_checkpoint(path)
    found = ckpt.get("fingerprint")
    if not found or not isinstance(found.get("arch"), dict) or "kind" not in found["arch"]:
        raise CheckpointError(f"{path} is not a pose3d model checkpoint (no architecture in "
                              f"its fingerprint)")
    arch = dict(found["arch"])
    if kind is not None and arch["kind"] != kind:
        raise CheckpointError(f"{path} holds a {arch['kind']} model ({found['class']}), "
                              f"not a {kind} model")
    try:
        model = build_model(arch)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model: {exc}") from None
    check_fingerprint(found, fingerprint(model, arch), path)
    model.load_state_dict(ckpt["model"])
    config = ckpt.get("config") or {}
    if isinstance(config, str):  # the trainer stores its config as YAML text
        config = yaml.safe_load(config) or {}
    return SavedModel(model.to(device).eval(), arch, config, ckpt)
