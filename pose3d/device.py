"""Which torch device a command runs on: one rule for train (`run.device`), `pose3d eval`
and `pose3d predict` (`--device`), checked before any work; and whether it runs in bf16."""

from __future__ import annotations

import contextlib
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX, as
    oneDNN reports it): there bf16 autocast trains about 1.4x faster; elsewhere it would be
    emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_autocast(device: torch.device, on_gpu: bool = True, on_cpu: bool = False):
    """The bf16 autocast context for `device`: on CUDA when `on_gpu`; on the CPU when
    `on_cpu` and the CPU has native bf16 (`cpu_has_native_bf16`); else a context that
    changes nothing (float32). bf16 needs no loss scaling."""
    if device.type == "cuda":
        enabled = on_gpu
    else:
        enabled = on_cpu and device.type == "cpu" and cpu_has_native_bf16()
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
