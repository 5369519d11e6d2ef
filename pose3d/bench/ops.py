"""Custom ops against their eager references: soft_argmax_3d and triangulate."""

from __future__ import annotations

import argparse
import importlib

import torch

from pose3d.cliargs import add_threads
from pose3d.env_report import collect

# op name -> module with run(args, device) -> str (Markdown tables with a title line)
OP_BENCHMARKS = {
    "soft_argmax": "pose3d.bench.soft_argmax",
    "triangulate": "pose3d.bench.triangulate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_threads(parser)
    parser.add_argument("--only", choices=sorted(OP_BENCHMARKS), default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")


def main(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    info = collect()
    where = info["devices"][device.index or 0] if device.type == "cuda" else info["cpu"]
    print(f"# pose3d bench ops on {device.type}: {where}, torch {info['torch']}, "
          f"{info['cpu_threads']} CPU threads\n")
    for name, module_name in OP_BENCHMARKS.items():
        if args.only and name != args.only:
            continue
        print(importlib.import_module(module_name).run(args, device))
        print()
    return 0
