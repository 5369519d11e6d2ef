"""Which torch device a command runs on: one rule for train (`run.device`), `pose3d eval`
and `pose3d predict` (`--device`), checked before any work."""

from __future__ import annotations

import re

import torch


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """"auto" or None -> CUDA when a GPU is visible, else the CPU; "cpu", "cuda" and
    "cuda:N" as named. ValueError (one line) for any other name, or for a CUDA device this
    machine does not have."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"device {name}: this machine has {count or 'no'} CUDA "
                             f"device{'s' if count != 1 else ''}")
    return device
