"""Custom ops against their eager references: soft_argmax_3d and triangulate."""

from __future__ import annotations

import argparse
import importlib

import torch

from pose3d.env_report import collect

# Each module provides add_arguments(group) and run(args, device) -> str (Markdown tables).
OP_BENCHMARKS = ["pose3d.bench.soft_argmax", "pose3d.bench.triangulate"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=["soft_argmax", "triangulate"], default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    for name in OP_BENCHMARKS:
        importlib.import_module(name).add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    info = collect()
    where = info["devices"][device.index or 0] if device.type == "cuda" else info["cpu"]
    print(f"# pose3d bench ops on {device.type}: {where}, torch {info['torch']}, "
          f"{info['cpu_threads']} CPU threads\n")
    for name in OP_BENCHMARKS:
        if args.only and not name.endswith(args.only):
            continue
        print(importlib.import_module(name).run(args, device))
        print()
    return 0
