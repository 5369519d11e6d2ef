"""Soft-argmax of 3D and 2D heatmaps (docs/design.md, eqs. 1-2): the fused op and its
reference.

`soft_argmax_3d` turns per-joint logit volumes `[B, J, D, H, W]` into expected voxel
coordinates `[B, J, 3]` = (x, y, z) along (W, H, D), in voxel units (0 .. W-1 etc.).
`soft_argmax_2d` does the same for `[B, J, H, W]` heatmaps, giving (x, y) in pixels.

The fused op (`torch.ops.pose3d.soft_argmax_3d`, C++/CUDA in csrc/soft_argmax/) reads the
logits once with an online max and sum and never materialises the probability volume; its
backward recomputes the probabilities from the logits and the saved per-volume
(max, log sum). It reads the logits where they lie when one volume axis has unit stride
(channels_last heatmaps of the single-view model included) and copies them otherwise. It has
a first derivative only: a double backward raises. Output dtype: float64 for float64 logits,
float32 for float32, float16 and bfloat16 logits (bfloat16 cannot hold a coordinate near 95
to better than a quarter voxel); the kernels accumulate in float32 for all of those, so
bfloat16 autocast needs no rule. A volume without a finite logit gives NaN, as the eager
softmax does.

Importing this module registers the op's fake (meta) kernels and its autograd formula.
"""

from __future__ import annotations

import torch

from pose3d.extension import load
from pose3d.ops.first_derivative import first_derivative_only

load()

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_heatmaps(heatmaps: object, dims: str, name: str) -> None:
    """Raise TypeError / ValueError for anything but a non-empty floating tensor [*dims]."""
    if not isinstance(heatmaps, torch.Tensor):
        raise TypeError(f"{name}: heatmaps must be a torch.Tensor, got {type(heatmaps).__name__}")
    if heatmaps.dim() != len(dims):
        shape = ", ".join(dims)
        raise ValueError(f"{name}: heatmaps must be [{shape}], got {heatmaps.dim()} dims "
                         f"with shape {tuple(heatmaps.shape)}")
    if heatmaps.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"{name}: heatmaps must be float32, float64, float16 or bfloat16, "
                        f"got {heatmaps.dtype}")
    if heatmaps.numel() == 0:
        raise ValueError(f"{name}: heatmaps is empty, shape {tuple(heatmaps.shape)}")


def soft_argmax_3d(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expected voxel coordinates of softmax(heatmaps) per joint.

    heatmaps: logits [B, J, D, H, W], any strides. Returns [B, J, 3] (x, y, z) in voxel
    units along (W, H, D); float32 (float64 for float64 logits). Differentiable.
    """
    _check_heatmaps(heatmaps, "BJDHW", "soft_argmax_3d")
    return torch.ops.pose3d.soft_argmax_3d(heatmaps)


def soft_argmax_2d(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expected pixel coordinates of softmax(heatmaps) per joint.

    heatmaps: logits [B, J, H, W]. Returns [B, J, 2] (x, y) in pixels along (W, H); float32
    (float64 for float64 logits). Differentiable.
    """
    _check_heatmaps(heatmaps, "BJHW", "soft_argmax_2d")
    return torch.ops.pose3d.soft_argmax_2d(heatmaps)


def soft_argmax_3d_reference(heatmaps: torch.Tensor) -> torch.Tensor:
    """Eager soft-argmax: materialises the probability volume. Same contract as soft_argmax_3d.

    Low-precision logits are softmaxed in float32, as the fused op does.
    """
    _check_heatmaps(heatmaps, "BJDHW", "soft_argmax_3d_reference")
    B, J, D, H, W = heatmaps.shape
    dtype = _stats_dtype(heatmaps.dtype)
    p = torch.softmax(heatmaps.reshape(B, J, -1), dim=-1, dtype=dtype).reshape(B, J, D, H, W)
    axes = [torch.arange(n, dtype=dtype, device=heatmaps.device) for n in (W, H, D)]
    x = (p.sum(dim=(2, 3)) * axes[0]).sum(-1)
    y = (p.sum(dim=(2, 4)) * axes[1]).sum(-1)
    z = (p.sum(dim=(3, 4)) * axes[2]).sum(-1)
    return torch.stack((x, y, z), dim=-1)


def soft_argmax_2d_reference(heatmaps: torch.Tensor) -> torch.Tensor:
    """Eager 2D soft-argmax: [B, J, H, W] logits -> [B, J, 2] (x, y) pixels."""
    _check_heatmaps(heatmaps, "BJHW", "soft_argmax_2d_reference")
    return soft_argmax_3d_reference(heatmaps.unsqueeze(2))[..., :2]


@torch.library.register_fake("pose3d::soft_argmax_3d_forward")
def _forward_fake(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _check_heatmaps(heatmaps, "BJDHW", "soft_argmax_3d_forward")
    B, J = heatmaps.shape[:2]
    dtype = _stats_dtype(heatmaps.dtype)
    return heatmaps.new_empty((B, J, 3), dtype=dtype), heatmaps.new_empty((B, J, 2), dtype=dtype)


@torch.library.register_fake("pose3d::soft_argmax_3d_backward")
def _backward_fake(grad_coords: torch.Tensor, heatmaps: torch.Tensor, coords: torch.Tensor,
                   stats: torch.Tensor) -> torch.Tensor:
    _check_heatmaps(heatmaps, "BJDHW", "soft_argmax_3d_backward")
    B, J = heatmaps.shape[:2]
    for name, t, last in (("grad_coords", grad_coords, 3), ("coords", coords, 3),
                          ("stats", stats, 2)):
        if tuple(t.shape) != (B, J, last):
            raise ValueError(f"soft_argmax_3d_backward: {name} must be [B, J, {last}] = "
                             f"[{B}, {J}, {last}], got {tuple(t.shape)}")
    # The kernels write the gradient in this layout (the logits' own where they are dense).
    return torch.empty_like(heatmaps)


def _setup_context(ctx, inputs, output) -> None:
    (heatmaps,) = inputs
    coords, stats = output
    # Only per-volume scalars are saved beside the logits, never a probability volume.
    ctx.save_for_backward(heatmaps, coords, stats)
    ctx.mark_non_differentiable(stats)


@first_derivative_only("soft_argmax_3d")
def _backward(ctx, grad_coords: torch.Tensor, _grad_stats: torch.Tensor | None):
    heatmaps, coords, stats = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None
    return torch.ops.pose3d.soft_argmax_3d_backward(grad_coords, heatmaps, coords, stats)


torch.library.register_autograd("pose3d::soft_argmax_3d_forward", _backward,
                                setup_context=_setup_context)
