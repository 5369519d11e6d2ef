"""What a training stage supplies to the loop (pose3d.train.loop): a model, its data, its loss.

The loop owns everything else (devices, DDP, precision, optimiser, checkpoints, logging), so
a stage is a short class that reads like the method it implements.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from pose3d.data.device_decode import decode_batch
from pose3d.models import build_model
from pose3d.train import checkpoint
from pose3d.train.checkpoint import CheckpointError
from pose3d.train.config import ConfigError, initial_weights
from pose3d.train.distributed import DistInfo


@dataclass(frozen=True)
class StepContext:
    """What a stage's loss needs to know about where it runs."""

    device: torch.device
    channels_last: bool


@dataclass
class StepOutput:
    loss: Tensor  # the scalar to minimise
    metrics: dict[str, Tensor]  # scalars to log (detached), averaged over ranks by the loop
    outputs: dict[str, Tensor]  # whatever `picture` needs (predictions), detached


class TrainStage:
    """Base class of the training stages (mv_pretrain, sv_pretrain, finetune)."""

    name = "stage"

    def model_config(self, cfg: DictConfig) -> DictConfig:
        """The model sub-config this stage trains (cfg.model.sv or cfg.model.mv)."""
        raise NotImplementedError

    def arch(self, cfg: DictConfig) -> dict:
        """The arguments of `pose3d.models.build_model` for this stage's model (`kind`
        included, initial weights excluded): what a checkpoint's fingerprint records, so
        that `pose3d.models.load_model` rebuilds the model from the file alone."""
        raise NotImplementedError

    def load_initial_weights(self, cfg: DictConfig, model: nn.Module, fp: dict) -> None:
        """Weights of a fresh run (not a resume), per pose3d.train.config.initial_weights:
        another checkpoint of this model (its fingerprint must match `fp`), or F_mv's trunk
        and 2D head; none when the config names none."""
        init = initial_weights(cfg)
        if init is None:
            return
        if not init.from_multi_view:
            checkpoint.load_model_weights(model, init.path, fp)
            return
        ckpt = checkpoint.load(init.path)
        found = (ckpt.get("fingerprint") or {}).get("class")
        if found != "MultiViewTriangulationModel":
            raise CheckpointError(f"{init.key}: {init.path} holds a {found or 'non-pose3d'} "
                                  f"checkpoint, not a multi-view model (stage=mv_pretrain)")
        try:
            model.init_from_multi_view(ckpt["model"])
        except ValueError as e:
            raise CheckpointError(f"{init.key}: {init.path}: {e}") from None

    def check_inputs(self, cfg: DictConfig) -> None:
        """Raise (one line) when the data or the initial weights this stage reads are
        missing: called before any work."""
        init = initial_weights(cfg)
        if init is not None and not os.path.isfile(init.path):
            hint = f" ({init.hint})" if init.hint else ""
            raise CheckpointError(f"{init.key}: no such checkpoint {init.path}{hint}")

    def build_model(self, cfg: DictConfig) -> nn.Module:
        """The model of `arch`, its backbone initialised from model.*.backbone_weights."""
        weights = self.model_config(cfg).backbone_weights or None
        try:
            return build_model({**self.arch(cfg), "weights_path": weights})
        except ValueError as exc:  # a file that is no state dict of this trunk: one line
            if weights is None:
                raise
            raise ConfigError(f"bad config: backbone_weights: {exc}") from None

    def prepare(self, cfg: DictConfig, model: nn.Module) -> None:
        """Read what the loss needs from the built model (heatmap space, stride), before the
        loop wraps it in DDP / torch.compile."""

    def batches_per_epoch(self, cfg: DictConfig, dist: DistInfo) -> int:
        """Batches per epoch on every rank: data.batches_per_epoch (a stage that reads shards
        counts one pass over its tuples when that is null)."""
        if cfg.data.batches_per_epoch is None:
            raise ConfigError(f"data.batches_per_epoch must be set for stage {self.name}")
        return int(cfg.data.batches_per_epoch)

    def train_loader(self, cfg: DictConfig, epoch: int, dist: DistInfo) -> Iterable[dict]:
        """Exactly `batches_per_epoch(cfg, dist)` batches on every rank."""
        raise NotImplementedError

    def step(self, model: nn.Module, batch: dict, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def num_images(self, batch: dict) -> int:
        """Images the model saw in this batch (for images/s)."""
        return int(batch["valid"].sum()) if "valid" in batch else len(batch["images"])

    def picture(self, batch: dict, out: StepOutput) -> np.ndarray | None:
        """An RGB uint8 picture of the first sample's predictions, or None."""
        return None


def batch_to(batch: dict, device: torch.device) -> dict:
    """Tensors of a batch to `device` (non-blocking from pinned memory); the rest as is. A
    batch of JPEG bytes (data.decode_on_device) is decoded there (decode_batch)."""
    moved = {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
             for k, v in batch.items()}
    return decode_batch(moved, device) if "jpegs" in moved else moved
