"""Batched, differentiable camera maps (OpenCV convention, millimetres, pixels).

A camera is K [..., 3, 3] (pixels), R [..., 3, 3] and t [..., 3] (world mm -> camera mm,
`x_cam = R X + t`), optionally with distortion [..., 5] = (k1, k2, p1, p2, k3).
Points are [..., N, 3] (N joints or points); leading dimensions broadcast.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_last(name: str, x: Tensor, shape: tuple[int, ...]) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.dim() - len(shape):]) != shape or x.dim() < len(shape):
        want = ", ".join(["..."] + [str(s) for s in shape])
        raise ValueError(f"{name} must have shape [{want}], got {list(x.shape)}")


def _check_points(name: str, x: Tensor, dim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape [..., N, {dim}], got {list(x.shape)}")


def world_to_camera(points: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """World mm [..., N, 3] -> camera mm [..., N, 3] (eq. 4: R X + t)."""
    _check_points("points", points, 3)
    _check_last("R", R, (3, 3))
    _check_last("t", t, (3,))
    return points @ R.transpose(-1, -2) + t.unsqueeze(-2)


def camera_to_world(points_cam: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Camera mm [..., N, 3] -> world mm [..., N, 3] (R^T (x - t))."""
    _check_points("points_cam", points_cam, 3)
    _check_last("R", R, (3, 3))
    _check_last("t", t, (3,))
    return (points_cam - t.unsqueeze(-2)) @ R


def distort(xy: Tensor, dist: Tensor) -> Tensor:
    """Apply OpenCV's radial-tangential model to normalised coordinates [..., N, 2]."""
    _check_last("dist", dist, (5,))
    k1, k2, p1, p2, k3 = (dist[..., i, None] for i in range(5))
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], dim=-1)


def camera_to_pixels(points_cam: Tensor, K: Tensor, dist: Tensor | None = None) -> Tensor:
    """Camera mm [..., N, 3] -> pixels [..., N, 2] (eq. 5), with optional distortion."""
    _check_points("points_cam", points_cam, 3)
    _check_last("K", K, (3, 3))
    xy = points_cam[..., :2] / points_cam[..., 2:3]
    if dist is not None:
        xy = distort(xy, dist)
    homog = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)
    return (homog @ K.transpose(-1, -2))[..., :2]


def project(points: Tensor, K: Tensor, R: Tensor, t: Tensor,
            dist: Tensor | None = None) -> Tensor:
    """World mm [..., N, 3] -> pixels [..., N, 2]; matches cv2.projectPoints."""
    return camera_to_pixels(world_to_camera(points, R, t), K, dist)


def pixels_to_camera(uv: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """Undistorted pixels [..., N, 2] at camera depth z [..., N] (mm) -> camera mm [..., N, 3]."""
    _check_points("uv", uv, 2)
    _check_last("K", K, (3, 3))
    # K is upper triangular (fx, skew, cx / fy, cy / 0 0 1): invert it in closed form.
    fx, skew, cx = K[..., 0, 0, None], K[..., 0, 1, None], K[..., 0, 2, None]
    fy, cy = K[..., 1, 1, None], K[..., 1, 2, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    return torch.stack([x * depth, y * depth, depth], dim=-1)


def unproject(uv: Tensor, depth: Tensor, K: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Undistorted pixels [..., N, 2] at camera depth [..., N] (mm) -> world mm [..., N, 3]."""
    return camera_to_world(pixels_to_camera(uv, depth, K), R, t)


def projection_matrix(K: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """P = K [R | t], [..., 3, 4]: the matrix DLT triangulation works with."""
    _check_last("K", K, (3, 3))
    _check_last("R", R, (3, 3))
    _check_last("t", t, (3,))
    return K @ torch.cat([R, t.unsqueeze(-1)], dim=-1)


def validate_cameras(K: Tensor, R: Tensor, t: Tensor, dist: Tensor | None = None,
                     atol: float = 1e-3) -> None:
    """Raise ValueError unless the cameras are finite, K is invertible, R is a rotation.

    Synchronises with the device: call it where data enters, not in a training step.
    """
    _check_last("K", K, (3, 3))
    _check_last("R", R, (3, 3))
    _check_last("t", t, (3,))
    named = {"K": K, "R": R, "t": t} | ({"dist": dist} if dist is not None else {})
    for name, x in named.items():
        if not torch.isfinite(x).all():
            raise ValueError(f"camera {name} has NaN or infinite entries")
    R64 = R.detach().double()
    eye = torch.eye(3, dtype=torch.float64, device=R.device)
    ortho_err = (R64 @ R64.transpose(-1, -2) - eye).abs().amax()
    if ortho_err > atol:
        raise ValueError(f"R is not a rotation: |R R^T - I| = {ortho_err:.3g} > {atol}")
    if (torch.linalg.det(R64) < 0).any():
        raise ValueError("R is a reflection (det R = -1), not a rotation")
    if (torch.linalg.det(K.detach().double()).abs() < 1e-9).any():
        raise ValueError("K is singular")
