"""The `pose3d` command line.

Each subcommand lives in the module that owns its feature; that module provides
`add_arguments(parser)` and `main(args) -> int`. Add a subcommand by adding a row to
COMMANDS when its feature lands. Only the module of the subcommand being run (or asked for
its --help) is imported: `pose3d --help` imports neither torch nor any feature.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

import pose3d
from pose3d.cliargs import HelpFormatter, show_defaults

# name -> (module, one-line help); help text is %-formatted by argparse: write % as %%
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("pose3d.env_report", "print torch, CUDA and extension build information"),
    "bench": ("pose3d.bench.cli", "benchmarks: ops, data, train, threads"),
    "synth": ("pose3d.data.synth", "render the synthetic multi-view studio into shards"),
    "convert": ("pose3d.data.convert.cli", "convert Human3.6M / MPI-INF-3DHP to shards"),
    "train": ("pose3d.train.cli", "train a stage: mv_pretrain, pgt, sv_pretrain, finetune"),
    "eval": ("pose3d.eval.cli", "evaluate single-view checkpoints: tables and figures"),
    "demo": ("pose3d.demo", "the whole method end to end on synthetic data"),
    "experiment": ("pose3d.experiment", "paired fine-tunings over seeds: arms, 95%% intervals"),
    "predict": ("pose3d.predict.cli", "a trained model on your own images, videos or rig"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s subparser gets its arguments (and imports its module)."""
    parser = argparse.ArgumentParser(prog="pose3d", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"pose3d {pose3d.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text % {})
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_main=module.main)
            show_defaults(p)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in `argv`: its first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_of(argv)).parse_args(argv)
    from pose3d.threads import apply_threads, fix_threads  # torch: not for --help

    if getattr(args, "threads", None):
        fix_threads(args.threads)
    apply_threads()
    try:
        return int(args._main(args) or 0)
    except (OSError, RuntimeError) as exc:
        message = storage_failure(exc)
        if message is None:
            raise
        print(f"pose3d {command_of(argv)}: error: {message}", file=sys.stderr)
        return 1


def storage_failure(exc: BaseException) -> str | None:
    """One line for a command that stopped because its disk is full (or its quota spent, or
    a checkpoint could not be written): what stopped and what to do. None for anything else,
    which keeps its traceback."""
    from pose3d.models.saved import CheckpointWriteError

    again = "free space, then run the same command again: finished work is reused"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or 'no space left on device'}{where}; {again}"
    if isinstance(exc, CheckpointWriteError):
        return f"{exc}; {again}"
    return None


if __name__ == "__main__":
    sys.exit(main())
