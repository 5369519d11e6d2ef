"""`pose3d train` and `python -m pose3d.train`: run one stage from a YAML config.

    torchrun --nproc_per_node=2 -m pose3d.train --config launch/configs/tiny.yaml \
        stage=sv_pretrain optim.sv_pretrain.lr=1e-3 [--resume latest]

Bad input (an unknown config key, a missing shard folder, a checkpoint of another model)
ends the run with one line on stderr and exit status 2, before any work; a NaN loss with
status 3, naming the step and the batch keys.
"""

from __future__ import annotations

import argparse
import os
import sys

from pose3d.train.checkpoint import CheckpointError
from pose3d.train.config import ConfigError, load_config
from pose3d.train.loop import NonFiniteLossError, train
from pose3d.train.pgt import NothingLabeledError
from pose3d.train.registry import make_stage

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML config (launch/configs/*.yaml)")
    parser.add_argument("--resume", default=None, metavar="auto|latest|none|PATH",
                        help="shorthand for run.resume=...: 'latest' continues from the "
                             "newest checkpoint in run.out_dir (default: auto)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. optim.finetune.lr=3e-4 run.wandb=offline")


def run(cfg, stage=None) -> dict:
    """Run the stage `cfg.stage` (the offline P-GT stage or a training stage); `stage`
    replaces the registered one (tests use a small stand-in)."""
    if stage is None:
        stage = make_stage(cfg.stage)
    return stage.run(cfg) if hasattr(stage, "run") else train(cfg, stage)


def _error(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":
        print(f"pose3d train: error: {message}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace, stage=None) -> int:
    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"run.resume={args.resume}")
    try:
        cfg = load_config(args.config, overrides)
        run(cfg, stage)
    except (ConfigError, CheckpointError, FileNotFoundError, NothingLabeledError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except NonFiniteLossError as exc:
        _error(str(exc))
        return EXIT_NON_FINITE
    return 0
