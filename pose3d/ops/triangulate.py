"""Confidence-weighted DLT triangulation: the `pose3d::triangulate` op and its references.

For every tuple b and joint j, view v contributes the rows `c (u P[2] - P[0])` and
`c (v P[2] - P[1])` of a DLT system `A X = 0` (P = proj[b, v], (u, v) = points2d[b, v, j],
c = confidences[b, v, j]; negative confidences count as zero). The homogeneous point X is the
eigenvector of the smallest eigenvalue of the 4x4 matrix A^T A.

The system is posed in a normalised world frame, `X = m + s q`: m is the confidence-weighted
centroid of the camera centres and s their weighted RMS distance from m. This is what makes
fp32 accurate (in millimetres A^T A spans ~14 orders of magnitude), and it makes the result
independent of the world frame's origin and unit. With noise-free points every frame gives the
exact point; with noisy points the answer differs from the plain (un-normalised) DLT of
OpenCV's `triangulatePoints` by a small fraction of the noise. `triangulate_svd_reference`
solves the same normalised system with a float64-capable batched SVD.

Degenerate problems never produce NaN. A problem is invalid when fewer than two views have a
positive confidence, the camera centres of those views coincide, the two smallest eigenvalues
are (nearly) equal (rays that do not pin down a point), or the point is at infinity; an
invalid problem returns the sentinel point (0, 0, 0), `valid = False` and zero gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pose3d.extension import load
from pose3d.ops.first_derivative import first_derivative_only

load()

__all__ = ["triangulate", "triangulate_svd_reference", "triangulate_loop_reference",
           "normalising_frame", "dlt_matrix"]

# Thresholds of csrc/triangulate/triangulate_math.h, mirrored by the reference.
_MIN_CAMERA_VOLUME = 1e-6


@torch.library.register_fake("pose3d::triangulate")
def _triangulate_fake(points2d: Tensor, proj: Tensor, confidences: Tensor) -> tuple[Tensor, Tensor]:
    B, V, J, _ = points2d.shape
    torch._check(proj.shape == (B, V, 3, 4), lambda: f"proj must be [B, V, 3, 4], got {proj.shape}")
    torch._check(confidences.shape == (B, V, J),
                 lambda: f"confidences must be [B, V, J], got {confidences.shape}")
    return points2d.new_empty(B, J, 3), points2d.new_empty(B, J, dtype=torch.bool)


@torch.library.register_fake("pose3d::triangulate_backward")
def _triangulate_backward_fake(grad_points3d: Tensor, points2d: Tensor, proj: Tensor,
                               confidences: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return (torch.empty_like(points2d, memory_format=torch.contiguous_format),
            torch.empty_like(proj, memory_format=torch.contiguous_format),
            torch.empty_like(confidences, memory_format=torch.contiguous_format))


def _setup_context(ctx, inputs: tuple[Tensor, Tensor, Tensor], output) -> None:
    ctx.save_for_backward(*inputs)


@first_derivative_only("triangulate")
def _backward(ctx, grad_points3d: Tensor, _grad_valid) -> tuple[Tensor, Tensor, Tensor]:
    points2d, proj, confidences = ctx.saved_tensors
    return torch.ops.pose3d.triangulate_backward.default(grad_points3d, points2d, proj,
                                                        confidences)


torch.library.register_autograd("pose3d::triangulate", _backward, setup_context=_setup_context)


def _check_inputs(points2d: Tensor, proj: Tensor, confidences: Tensor | None) -> None:
    for name, x in (("points2d", points2d), ("proj", proj), ("confidences", confidences)):
        if x is not None and not isinstance(x, Tensor):
            raise TypeError(f"triangulate: {name} must be a Tensor, got {type(x).__name__}")
        if x is not None and not x.is_floating_point():
            raise TypeError(f"triangulate: {name} must be floating point, got {x.dtype}")
    if points2d.dim() != 4 or points2d.shape[-1] != 2:
        raise ValueError(f"triangulate: points2d must be [B, V, J, 2], got {tuple(points2d.shape)}")
    B, V, J, _ = points2d.shape
    if proj.shape != (B, V, 3, 4):
        raise ValueError(f"triangulate: proj must be [B, V, 3, 4] = [{B}, {V}, 3, 4], "
                         f"got {tuple(proj.shape)}")
    if confidences is not None and confidences.shape != (B, V, J):
        raise ValueError(f"triangulate: confidences must be [B, V, J] = [{B}, {V}, {J}], "
                         f"got {tuple(confidences.shape)}")
    devices = {x.device for x in (points2d, proj, confidences) if x is not None}
    if len(devices) > 1:
        raise ValueError("triangulate: inputs must be on one device, got "
                         f"{sorted(map(str, devices))}")


def triangulate(points2d: Tensor, proj: Tensor, confidences: Tensor | None = None,
                return_valid: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Triangulate every joint of every tuple from its views (confidence-weighted DLT).

    Args:
        points2d: [B, V, J, 2] pixel coordinates (u, v) of joint j in view v.
        proj: [B, V, 3, 4] projection matrices K [R | t] (world mm -> pixels).
        confidences: [B, V, J] per-view, per-joint weights (rows of view v are scaled by
            them; <= 0 leaves the view out); None means all ones.
        return_valid: also return the validity mask.

    Returns:
        points3d [B, J, 3] in world units (mm); with `return_valid`, also valid [B, J] bool.
        Invalid problems (see the module docstring) give (0, 0, 0) and zero gradients.
        float32 and float64 are computed in their own precision; other floating dtypes are
        computed in and returned as float32. Differentiable in all three inputs.
    """
    _check_inputs(points2d, proj, confidences)
    dtype = torch.promote_types(points2d.dtype, proj.dtype)
    if confidences is not None:
        dtype = torch.promote_types(dtype, confidences.dtype)
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    if confidences is None:
        B, V, J, _ = points2d.shape
        confidences = torch.ones(B, V, J, dtype=dtype, device=points2d.device)
    points3d, valid = torch.ops.pose3d.triangulate.default(
        points2d.to(dtype), proj.to(dtype), confidences.to(dtype))
    return (points3d, valid) if return_valid else points3d


def _camera_centres(proj: Tensor) -> tuple[Tensor, Tensor]:
    """Camera centres [..., 3] of proj [..., 3, 4] and whether each is finite [...] bool
    (False for an affine or zero camera). Differentiable where finite."""
    r0, r1, r2 = proj[..., 0, :3], proj[..., 1, :3], proj[..., 2, :3]
    cross = torch.linalg.cross
    c12, c20, c01 = cross(r1, r2), cross(r2, r0), cross(r0, r1)
    det = (r0 * c12).sum(-1)
    volume = r0.norm(dim=-1) * r1.norm(dim=-1) * r2.norm(dim=-1)
    ok = det.abs() > _MIN_CAMERA_VOLUME * volume
    safe_det = torch.where(ok, det, torch.ones_like(det))
    # M^{-1} has the columns r1 x r2, r2 x r0, r0 x r1 over det.
    p = proj[..., :, 3]
    centres = -(c12 * p[..., 0:1] + c20 * p[..., 1:2] + c01 * p[..., 2:3]) / safe_det[..., None]
    return torch.where(ok[..., None], centres, torch.zeros_like(centres)), ok


def normalising_frame(proj: Tensor, confidences: Tensor) -> tuple[Tensor, Tensor]:
    """The frame X = m + s q in which `triangulate` poses each problem.

    Args:
        proj: [B, V, 3, 4]; confidences: [B, V, J].

    Returns:
        m [B, J, 3] (world units): centroid of the finite camera centres, weighted by the
        positive part of the confidences; s [B, J]: their weighted RMS distance from m.
        Problems with fewer than two such centres get m = 0, s = 1 (the plain frame).
    """
    centres, ok = _camera_centres(proj)                            # [B, V, 3], [B, V]
    w = confidences.clamp_min(0) * ok[..., None]                   # [B, V, J]
    W = w.sum(1)                                                   # [B, J]
    framed = (w > 0).sum(1) >= 2
    safe_W = torch.where(framed, W, torch.ones_like(W))
    m = torch.einsum("bvj,bvk->bjk", w, centres) / safe_W[..., None]
    d2 = ((centres[:, :, None, :] - m[:, None]) ** 2).sum(-1)     # [B, V, J]
    s = ((w * d2).sum(1) / safe_W).clamp_min(torch.finfo(proj.dtype).tiny).sqrt()
    m = torch.where(framed[..., None], m, torch.zeros_like(m))
    s = torch.where(framed, s, torch.ones_like(s))
    return m, s


def dlt_matrix(points2d: Tensor, proj: Tensor, confidences: Tensor | None = None,
               frame: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """The DLT systems A [B, J, 2V, 4] (rows c (u P[2] - P[0]), c (v P[2] - P[1]) per view).

    With `frame` = (m [B, J, 3], s [B, J]) the columns are those of the normalised unknown
    q (X = m + s q); without it they are those of the world point (the plain DLT).
    """
    B, V, J, _ = points2d.shape
    if confidences is None:
        confidences = points2d.new_ones(B, V, J)
    c = confidences.clamp_min(0)
    P = proj[:, :, None]                                            # [B, V, 1, 3, 4]
    rows = points2d[..., None] * P[..., 2:3, :] - P[..., :2, :]     # [B, V, J, 2, 4]
    rows = rows * c[..., None, None]
    if frame is not None:
        m, s = frame
        m, s = m[:, None, :, None, :], s[:, None, :, None]
        last = ((rows[..., :3] * m).sum(-1) + rows[..., 3]) / s
        rows = torch.cat([rows[..., :3], last[..., None]], dim=-1)
    return rows.permute(0, 2, 1, 3, 4).reshape(B, J, 2 * V, 4)


def triangulate_svd_reference(points2d: Tensor, proj: Tensor, confidences: Tensor | None = None,
                              normalise: bool = True) -> Tensor:
    """Pure-PyTorch triangulation by batched `torch.linalg.svd`, differentiable by autograd.

    With `normalise` (the default) it solves exactly the system `triangulate` solves (the
    ground truth of the tests, in float64); without, the plain DLT in world coordinates
    (OpenCV's `triangulatePoints`, learnable-triangulation). Shapes as `triangulate`; needs
    V >= 2 and well-posed problems (no validity handling).
    """
    B, V, J, _ = points2d.shape
    if confidences is None:
        confidences = points2d.new_ones(B, V, J)
    if normalise:
        m, s = normalising_frame(proj, confidences)
    else:
        m, s = points2d.new_zeros(B, J, 3), points2d.new_ones(B, J)
    A = dlt_matrix(points2d, proj, confidences, frame=(m, s) if normalise else None)
    Y = torch.linalg.svd(A, full_matrices=False).Vh[..., -1, :]     # [B, J, 4]
    return m + s[..., None] * Y[..., :3] / Y[..., 3:]


def triangulate_loop_reference(points2d: Tensor, proj: Tensor,
                               confidences: Tensor | None = None) -> Tensor:
    """The per-point way (as in learnable-triangulation): a Python loop over tuples and
    joints, one `torch.linalg.svd` of the plain 2V x 4 system each. For benchmarks."""
    B, V, J, _ = points2d.shape
    if confidences is None:
        confidences = points2d.new_ones(B, V, J)
    out = []
    for b in range(B):
        for j in range(J):
            uv = points2d[b, :, j]                                   # [V, 2]
            A = uv[:, :, None] * proj[b, :, 2:3, :] - proj[b, :, :2, :]
            A = (A * confidences[b, :, j, None, None]).reshape(2 * V, 4)
            X = torch.linalg.svd(A, full_matrices=False).Vh[-1]
            out.append(X[:3] / X[3])
    return torch.stack(out).reshape(B, J, 3)
