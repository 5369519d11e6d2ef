"""A stand-in training stage for the trainer's tests: a small conv net regressing 17 3D
points from 16 x 16 images of an in-memory data set. It exercises the loop, DDP, checkpoints
and logging without the real models or shards."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pose3d.train.stage import StepOutput, TrainStage

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

    def build_model(self, cfg) -> nn.Module:
        return ToyNet(cfg.model.sv.deconv_channels)

    def arch(self, cfg) -> dict:
        return {"kind": "toy", "deconv_channels": cfg.model.sv.deconv_channels}

    def train_loader(self, cfg, epoch, dist):
        bs = cfg.optim[cfg.stage].batch_size
        for i in range(cfg.data.batches_per_epoch):
            self.loaded_batches.append((epoch, i))
            yield toy_batch(cfg.run.seed, epoch, dist.rank, i, bs)

    def step(self, model, batch, ctx) -> StepOutput:
        pred = model(batch["images"].flatten(0, 1))
        loss = (pred - batch["target"]).abs().mean()
        return StepOutput(loss, {"train/l1": loss.detach()}, {"pred": pred.detach()})

    def picture(self, batch, out) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)
