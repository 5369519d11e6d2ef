"""`pose3d train` and `python -m pose3d.train`: run one stage from a YAML config.

    torchrun --nproc_per_node=2 -m pose3d.train --config launch/configs/tiny.yaml \
        stage=sv_pretrain optim.sv_pretrain.lr=1e-3 [--resume latest]

Bad input (an unknown config key, a missing shard folder, a checkpoint of another model)
ends the run with one line on stderr and exit status 2, before any work; a NaN loss with
status 3, naming the step and the batch keys.

torchrun restarts a worker group after any failure (`--max-restarts`), whatever the exit
status: no status tells it that a failure will recur. So a NaN loss, which would recur from
the same checkpoint, is recorded in `<run.out_dir>/fatal.json`, and a restarted worker of
the same launch (TORCHELASTIC_RUN_ID, TORCHELASTIC_RESTART_COUNT > 0) that finds it exits at
once with the same status and message, before any work. Bad input needs no record: it
fails before any work on every attempt. A new launch starts afresh (the record is removed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pose3d.threads import apply_threads
from pose3d.train.checkpoint import CheckpointError
from pose3d.train.config import ConfigError, load_config
from pose3d.train.loop import NonFiniteLossError, train
from pose3d.train.pgt import NothingLabeledError
from pose3d.train.registry import make_stage
from pose3d.train.run_lock import in_use

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
FATAL_FILE = "fatal.json"


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
    apply_threads(cfg.run.threads)  # a torchrun worker too: the node's cores per worker
    return stage.run(cfg) if hasattr(stage, "run") else train(cfg, stage)


def _error(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":
        print(f"pose3d train: error: {message}", file=sys.stderr, flush=True)


def _restart_count() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def _fatal_of_this_launch(out_dir: str) -> tuple[int, str] | None:
    """In a worker torchrun restarted: the failure an earlier attempt of the same launch
    recorded as certain to recur, as (exit status, message)."""
    path = Path(out_dir) / FATAL_FILE
    if _restart_count() == 0:
        # an earlier launch's: this one starts afresh, unless a live run holds the folder
        # (this launch will be refused; the record is that run's)
        if os.environ.get("RANK", "0") == "0" and not in_use(out_dir):
            path.unlink(missing_ok=True)
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("run_id") != os.environ.get("TORCHELASTIC_RUN_ID"):
        return None
    return int(record["exit"]), str(record["message"])


def _record_fatal(out_dir: str, code: int, message: str) -> None:
    if "TORCHELASTIC_RUN_ID" not in os.environ or os.environ.get("RANK", "0") != "0" \
            or not Path(out_dir).is_dir():
        return
    record = {"run_id": os.environ["TORCHELASTIC_RUN_ID"], "attempt": _restart_count(),
              "exit": code, "message": message}
    Path(out_dir, FATAL_FILE).write_text(json.dumps(record) + "\n")


def main(args: argparse.Namespace, stage=None) -> int:
    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"run.resume={args.resume}")
    try:
        cfg = load_config(args.config, overrides)
        fatal = _fatal_of_this_launch(cfg.run.out_dir)
        if fatal is not None:
            _error(f"not retrying: attempt {_restart_count()} of this torchrun launch would "
                   f"fail as an earlier one did: {fatal[1]}")
            return fatal[0]
        run(cfg, stage)
    except (ConfigError, CheckpointError, FileNotFoundError, NothingLabeledError,
            PermissionError, FileExistsError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except NonFiniteLossError as exc:
        _error(str(exc))
        _record_fatal(cfg.run.out_dir, EXIT_NON_FINITE, str(exc))
        return EXIT_NON_FINITE
    return 0
