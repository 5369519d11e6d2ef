"""FLOPs of a training step, counted one way for every row of `pose3d bench train`.

2 FLOPs per multiply-add, convolutions and matrix products only (what
torch.utils.flop_counter counts; BatchNorm, ReLU, pooling and the soft-argmax count none),
and a training step = 3x its forward pass (the backward computes the gradients of both the
inputs and the weights of every layer: two products the size of the forward's).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

TRAIN_STEP_FACTOR = 3  # forward + backward = 3 x forward


def forward_flops(forward: Callable[[], object]) -> int:
    """FLOPs of one call of `forward` (no gradients taken)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward()
    return int(counter.get_total_flops())


def train_flops_per_image(forward: Callable[[], object], images: int) -> float:
    """Training FLOPs per image of a step whose forward pass is `forward` on `images`
    images."""
    return TRAIN_STEP_FACTOR * forward_flops(forward) / images
