"""Argparse pieces every subcommand shares: help that shows defaults, deprecated spellings,
`--checkpoint NAME=PATH`, names that become files under `--out`.

Imports nothing from pose3d, so any layer's `add_arguments` may use it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, except where there is nothing to show
    (None, False) or the help already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return action.help
        return super()._get_help_string(action)


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give `parser` and every nested subcommand parser HelpFormatter; an option with no
    help text but a default gets a help line that shows it."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
        elif (action.help is None and action.option_strings
              and action.default is not None and action.default is not False
              and action.default != argparse.SUPPRESS):
            action.help = "(default: %(default)s)"


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's dest and says so on
    stderr, in one line."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}",
              file=sys.stderr, flush=True)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def deprecated_alias(parser: argparse._ActionsContainer, old: str, new: argparse.Action) -> None:
    """Keep `old` (e.g. "--seed") working as a hidden alias of the option `new` (the Action
    `parser.add_argument` returned): same dest, type and arity, plus a deprecation line."""
    parser.add_argument(old, action=_DeprecatedAlias, new=new.option_strings[0], dest=new.dest,
                        nargs=new.nargs, const=new.const, type=new.type, choices=new.choices,
                        metavar=new.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_wandb(parser: argparse.ArgumentParser) -> None:
    """--wandb, with the one default of every command and of the configs (run.wandb)."""
    parser.add_argument("--wandb", default="disabled", choices=["online", "offline", "disabled"],
                        help="Weights & Biases logging; disabled by default, as in every config, "
                             "so nothing needs an account or a network (offline: write runs to "
                             "`wandb sync` later)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    """--threads, for a command that takes a device: its CPU threads, fixed (like
    OMP_NUM_THREADS, which it overrides, also for the processes it starts)."""
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="CPU threads, fixed (default: the free cores, adapted to other "
                             "load while it runs; OMP_NUM_THREADS fixes it too)")


def split_checkpoint(text: str) -> tuple[str, str]:
    """A --checkpoint value, PATH or NAME=PATH -> (name, path); a bare PATH is named by its
    file's stem. A file that exists as written is a PATH even if its name holds a '='."""
    name, _, path = ("", "", text) if Path(text).is_file() else text.rpartition("=")
    return name or Path(path).stem, path


def check_output_names(names: list[str], what: str, reserved: tuple[str, ...] = ()) -> None:
    """Names that become file or folder names under --out (predict's inputs and rig cameras,
    eval's checkpoint names): plain file names (no separator, not `.` or `..`, not
    absolute, not one of `reserved`) and unique; ValueError in one line."""
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{what} names must be text, got {name!r}")
        if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
                or os.path.isabs(name) or name in reserved):
            raise ValueError(f"{what} {name!r} cannot name a file under --out: it must be a "
                             f"plain file name (no / or \\, not . or .."
                             f"{', not ' + ' or '.join(reserved) if reserved else ''})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two or more {what}s are named {', '.join(twice)}: their outputs "
                         f"would share one place under --out; give each a name of its own")
