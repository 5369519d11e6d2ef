"""Checkpoints: atomic writes, a `latest.pt` link, the last K kept, validated loads.

A checkpoint is one `torch.save` dict: model, optimizer, scaler, step, epoch, step_in_epoch,
rng (one state per rank), config, and `fingerprint` (the model's class and architecture =
the arguments of `pose3d.models.build_model`), so that loading into another model fails with
one clear line instead of a wall of key errors, and `pose3d.models.load_model(path)` rebuilds
the model from the file alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import torch
from torch import nn

from pose3d.models.saved import (  # noqa: F401 - re-exported: the trainer's checkpoint API
    CheckpointError,
    CheckpointWriteError,
    check_fingerprint,
    fingerprint,
    unwrap,
)
from pose3d.models.saved import read_checkpoint as load

LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d{8})\.pt$")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: object, path: str | Path) -> Path:
    """torch.save to a temporary file beside `path`, fsync, then rename over `path`: a reader
    (or a restart after a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota, a folder made read-only mid-run
        raise CheckpointWriteError(f"cannot save a checkpoint in {path.parent}: "
                                   f"{exc.strerror or exc} (the previous checkpoints are "
                                   f"kept)") from None
    except RuntimeError as exc:
        # torch's zip writer reports a failed write as "enforce fail at inline_container.cc
        # ... unexpected pos": name the folder and its free space instead
        if "inline_container" not in str(exc) and "write" not in str(exc).lower():
            raise
        free = shutil.disk_usage(path.parent).free / 2**20
        raise CheckpointWriteError(f"cannot save a checkpoint in {path.parent}: the write "
                                   f"failed ({free:.0f} MiB free there; the previous "
                                   f"checkpoints are kept)") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def _point_latest(folder: Path, target: Path) -> None:
    link = folder / LATEST
    tmp = folder / f".{LATEST}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)


def step_checkpoints(folder: str | Path) -> list[Path]:
    """The `step_*.pt` files in `folder`, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _STEP_FILE.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_FILE.match(p.name).group(1)))


def save(state: dict, folder: str | Path, step: int, keep: int = 3) -> Path:
    """Write `state` as `folder/step_XXXXXXXX.pt`, point `latest.pt` at it, keep the last
    `keep` step files."""
    folder = Path(folder)
    path = atomic_save(state, folder / f"step_{step:08d}.pt")
    _point_latest(folder, path)
    for stale in folder.glob(".*.tmp-*"):  # left by a process killed while saving
        if not stale.name.endswith(f".tmp-{os.getpid()}"):
            stale.unlink(missing_ok=True)
    for old in step_checkpoints(folder)[:-keep]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def find_latest(folder: str | Path) -> Path | None:
    """The newest checkpoint in `folder`: the highest step file (the `latest.pt` link can lag
    one save behind if the process died between the rename and the link update)."""
    files = step_checkpoints(folder)
    return files[-1] if files else None


def digest(path: str | Path) -> str:
    """SHA-256 (hex) of a checkpoint file's bytes, the link followed: which weights it holds,
    whatever its name or mtime (a copy keeps its old mtime; a retrained run reuses names)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def load_model_weights(model: nn.Module, path: str | Path, expected: dict) -> dict:
    """Load only the model weights of a checkpoint (to start a stage from another stage's
    result), after checking its fingerprint. Returns the checkpoint dict."""
    ckpt = load(path)
    check_fingerprint(ckpt.get("fingerprint"), expected, path)
    unwrap(model).load_state_dict(ckpt["model"])
    return ckpt
