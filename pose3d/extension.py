"""Loading the compiled extension `pose3d._C` and reporting how it was built."""

from __future__ import annotations

import functools
import json

import torch


class ExtensionNotBuilt(ImportError):
    """Raised when `pose3d._C` is missing or was built against another torch."""


@functools.cache
def load() -> None:
    """Import `pose3d._C`, which registers the `torch.ops.pose3d` ops. Idempotent."""
    try:
        # here, not at the top: `pose3d env` must run (and say so) without a built extension
        from pose3d import _C  # noqa: F401
    except ImportError as exc:
        raise ExtensionNotBuilt(
            f"pose3d._C could not be imported ({exc}). Build it with "
            "`pip install --no-build-isolation -e .` in the repository root, against the torch "
            "you run with."
        ) from exc


def build_info() -> dict:
    """How the extension was built: version, CUDA kernels compiled, CUDA arch list, OpenMP."""
    load()
    return json.loads(torch.ops.pose3d.build_info())
