"""A stand-in training stage for the trainer's tests: a small conv net regressing 17 3D
points from 16 x 16 images of an in-memory data set. It exercises the loop, DDP, checkpoints
and logging without the real models or shards.

Faults on demand (environment, so that they reach torchrun's workers):
POSE3D_TEST_CRASH_AT_STEP=N (+ POSE3D_TEST_CRASH_MARKER=file, POSE3D_TEST_CRASH_RANK=r):
rank r exits abruptly after step N, once (the marker file records that it did), and only
once rank 0 has logged step N: torchrun stops rank 0 as soon as rank r is gone, and rank 0
logs a step after the collectives that let rank r go on, so without the wait a busy machine
decides whether step N's line is written;
POSE3D_TEST_NAN_AT_STEP=N: the loss of step N becomes NaN;
POSE3D_TEST_SLOW_LOG_AT_STEP=N: rank 0 takes SLOW_LOG_S seconds longer to log step N (as on
a loaded machine; `slow_logging_on_demand`, called by tests/train_toy.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pose3d.train.stage_base import StepOutput, TrainStage

SIZE = 16


class ToyNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.head = nn.Linear(channels, 17 * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3))).view(-1, 17, 3)


def toy_batch(seed: int, epoch: int, rank: int, index: int, batch_size: int) -> dict:
    """A deterministic batch: the target is a fixed function of the image."""
    g = torch.Generator().manual_seed(hash((seed, epoch, rank, index)) % 2**31)
    images = torch.randn(batch_size, 1, 3, SIZE, SIZE, generator=g)
    target = images.mean(dim=(1, 3, 4)).repeat_interleave(17, dim=0).view(batch_size, 17, 3)
    keys = [f"toy-e{epoch}-r{rank}-b{index}-{j}" for j in range(batch_size)]
    return {"images": images, "target": target, "key": keys,
            "valid": torch.ones(batch_size, 1, dtype=torch.bool)}


class ToyStage(TrainStage):
    name = "toy"

    def __init__(self) -> None:
        self.loaded_batches: list[tuple[int, int]] = []

    def model_config(self, cfg):
        return cfg.model.sv

    def arch(self, cfg) -> dict:
        return {"kind": "toy", "deconv_channels": cfg.model.sv.deconv_channels}

    def build_model(self, cfg) -> nn.Module:
        return ToyNet(cfg.model.sv.deconv_channels)

    def train_loader(self, cfg, epoch, dist):
        bs = cfg.optim[cfg.stage].batch_size
        for i in range(cfg.data.batches_per_epoch):
            step = epoch * cfg.data.batches_per_epoch + i + 1  # the loop's step number
            _maybe_crash(step - 1, dist.rank, cfg.run.out_dir)  # asked for step N + 1: N done
            self.loaded_batches.append((epoch, i))
            yield {**toy_batch(cfg.run.seed, epoch, dist.rank, i, bs), "step": step}

    def step(self, model, batch, ctx) -> StepOutput:
        pred = model(batch["images"].flatten(0, 1))
        loss = (pred - batch["target"]).abs().mean()
        if os.environ.get("POSE3D_TEST_NAN_AT_STEP") == str(batch.get("step")):
            loss = loss * float("nan")
        return StepOutput(loss, {"train/l1": loss.detach()}, {"pred": pred.detach()})

    def picture(self, batch, out) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)


SLOW_LOG_S = 3.0
LOGGED_WAIT_S = 60.0  # at most this long for rank 0's line; then crash anyway


def _maybe_crash(step: int, rank: int, out_dir: str) -> None:
    at, marker = os.environ.get("POSE3D_TEST_CRASH_AT_STEP"), os.environ.get(
        "POSE3D_TEST_CRASH_MARKER")
    if at != str(step) or not marker or rank != int(os.environ.get(
            "POSE3D_TEST_CRASH_RANK", "1")) or Path(marker).exists():
        return
    deadline = time.monotonic() + LOGGED_WAIT_S
    while step not in _logged_steps(Path(out_dir) / "metrics.jsonl") \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(marker).write_text(f"crashed after step {step}\n")
    os._exit(17)  # like a killed worker: no cleanup, no exception handling


def _logged_steps(path: Path) -> set[int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return set()
    steps = set()
    for line in lines:
        try:
            steps.add(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass  # a line being written
    return steps


def slow_logging_on_demand() -> None:
    """POSE3D_TEST_SLOW_LOG_AT_STEP=N: rank 0's Logger.log of step N sleeps SLOW_LOG_S first."""
    at = os.environ.get("POSE3D_TEST_SLOW_LOG_AT_STEP")
    if not at:
        return
    from pose3d.train.logger import Logger

    log = Logger.log

    def slow_log(self, scalars: dict, step: int) -> None:
        if self.active and step == int(at):
            time.sleep(SLOW_LOG_S)
        log(self, scalars, step)

    Logger.log = slow_log
