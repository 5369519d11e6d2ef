"""`pose3d env`: what torch, CUDA and the compiled extension look like on this machine."""

from __future__ import annotations

import argparse
import json
import platform

import torch

import pose3d
from pose3d.extension import ExtensionNotBuilt, build_info


def collect() -> dict:
    """Versions and build facts as a flat dict (JSON-serialisable)."""
    info = {
        "pose3d": pose3d.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        ext = build_info()
        info.update({
            "extension": "built",
            "extension_cuda_kernels": ext["cuda"],
            "extension_cuda_arch_list": ext["cuda_arch_list"],
            "extension_openmp": ext["openmp"],
        })
    except ExtensionNotBuilt as exc:
        info["extension"] = f"not built: {exc}"
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0 if info["extension"] == "built" else 1
