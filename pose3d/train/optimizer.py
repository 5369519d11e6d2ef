"""The trainer's optimiser: Adam over the model's parameters, its step fused when asked."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig

from pose3d.train.config import scaled_lr


def optimizer_options(fused: bool, device: torch.device) -> dict[str, bool]:
    """Adam's keyword for a multi-tensor step on `device`: one fused kernel per step on CUDA
    (fused=True), the foreach implementation (a few ops over all tensors at once) elsewhere;
    {} (torch's default) when `fused` is off."""
    if not fused:
        return {}
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def make_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter],
                   device: torch.device, world_size: int = 1) -> torch.optim.Adam:
    """Adam at the stage's scaled lr (pose3d.train.config.scaled_lr) with optim.weight_decay,
    fused per optim.fused (optimizer_options)."""
    return torch.optim.Adam(params, lr=scaled_lr(cfg, world_size),
                            weight_decay=cfg.optim.weight_decay,
                            **optimizer_options(cfg.optim.fused, device))
