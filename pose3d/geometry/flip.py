"""Mirroring 2D joints between an image and its horizontally flipped copy (test-time flip
augmentation of the multi-view teacher, docs/design.md "P-GT").

Pixel convention of the whole package: the centre of pixel column i is at u = i (the
renderer's pixel grid and OpenCV's warps), so flipping an image of width W moves u to
W - 1 - u. A mirror image also swaps the body's sides: the joint the model calls "left
wrist" in the flipped image is the right wrist of the original.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pose3d.skeleton.h36m import FLIP_PERMUTATION


def unflip_points2d(points2d: Tensor, width: int,
                    permutation: Sequence[int] = FLIP_PERMUTATION) -> Tensor:
    """2D joints found in the flipped image -> the same joints in the original image.

    points2d: [..., J, 2] pixels (u, v) in the flipped image of `width` pixels. Returns
    [..., J, 2]: u -> width - 1 - u, v unchanged, joint j taken from joint permutation[j]
    (left and right swapped). Its own inverse.
    """
    if points2d.shape[-1] != 2 or points2d.shape[-2] != len(permutation):
        raise ValueError(f"points2d must be [..., {len(permutation)}, 2], "
                         f"got {list(points2d.shape)}")
    swapped = points2d[..., list(permutation), :]
    return torch.stack([(width - 1) - swapped[..., 0], swapped[..., 1]], dim=-1)


def unflip_joint_values(values: Tensor, permutation: Sequence[int] = FLIP_PERMUTATION
                        ) -> Tensor:
    """Per-joint values [..., J] (confidences) of the flipped image -> the original's joints."""
    if values.shape[-1] != len(permutation):
        raise ValueError(f"values must be [..., {len(permutation)}], got {list(values.shape)}")
    return values[..., list(permutation)]
