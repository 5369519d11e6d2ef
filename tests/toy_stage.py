"""A stand-in training stage for the trainer's tests: a small conv net regressing 17 3D
points from 16 x 16 images of an in-memory data set. It exercises the loop, DDP, checkpoints
and logging without the real models or shards.

Faults on demand (environment, so that they reach torchrun's workers):
POSE3D_TEST_CRASH_AT_STEP=N (+ POSE3D_TEST_CRASH_MARKER=file): rank 0 exits abruptly after
step N, once (the marker file records that it did). Rank 0 is the one to kill: it holds the
run folder and the W&B run that the restarted group must take over, and it has logged step N
before it asks for the next batch, so nothing about the crash depends on the machine's pace;
POSE3D_TEST_NAN_AT_STEP=N: the loss of step N becomes NaN.
"""

from __future__ import annotations

import os
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
            _maybe_crash(step - 1, dist.rank)  # asked for step N + 1: N done
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


def _maybe_crash(step: int, rank: int) -> None:
    at, marker = os.environ.get("POSE3D_TEST_CRASH_AT_STEP"), os.environ.get(
        "POSE3D_TEST_CRASH_MARKER")
    if at != str(step) or not marker or rank != 0 or Path(marker).exists():
        return
    Path(marker).write_text(f"crashed after step {step}\n")
    os._exit(17)  # like a killed worker: no cleanup, no exception handling, no W&B finish
