"""The `pose3d` command line.

Each subcommand lives in the module that owns its feature; that module provides
`add_arguments(parser)` and `main(args) -> int`. Add a subcommand by adding a row to
COMMANDS when its feature lands.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import pose3d

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("pose3d.env_report", "print torch, CUDA and extension build information"),
    "bench": ("pose3d.bench.cli", "benchmarks: ops, data, train"),
    "synth": ("pose3d.data.synth", "render the synthetic multi-view studio into shards"),
    "convert": ("pose3d.data.convert.cli", "convert Human3.6M / MPI-INF-3DHP to shards"),
    "train": ("pose3d.train.cli", "train a stage: mv_pretrain, pgt, sv_pretrain, finetune"),
    "eval": ("pose3d.eval.cli", "evaluate single-view checkpoints: tables and figures"),
    "demo": ("pose3d.demo", "the whole method end to end on synthetic data"),
    "experiment": ("pose3d.experiment", "paired fine-tunings over seeds: arms, 95% intervals"),
    "predict": ("pose3d.predict.cli", "a trained model on your own images, videos or rig"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose3d", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pose3d {pose3d.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
