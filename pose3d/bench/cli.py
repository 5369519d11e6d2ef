"""`pose3d bench TARGET`: dispatch to the benchmark module of each target."""

from __future__ import annotations

import argparse
import importlib

# target -> module with add_arguments(parser) and main(args)
TARGETS: dict[str, str] = {
    "ops": "pose3d.bench.ops",
    "data": "pose3d.bench.data",
    "train": "pose3d.bench.train",
    "profile": "pose3d.bench.profile",
    "threads": "pose3d.bench.threads",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, module_name in TARGETS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(_bench_main=module.main)


def main(args: argparse.Namespace) -> int:
    return int(args._bench_main(args) or 0)
