"""Triangulation that leaves out a view whose 2D joint disagrees with the others
(outlier rejection for the P-GT labelling, docs/design.md "P-GT").

A wrong 2D detection in one view (a wrist found on the other arm) pulls the DLT solution
of docs/design.md eq. 3 towards it by tens of millimetres. Reprojecting the solution into
every view shows the culprit as the view with by far the largest error: it is given zero
weight and the joint is triangulated again from the rest, as long as enough views remain.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pose3d.ops.triangulate import triangulate


def reprojection_error(points3d: Tensor, proj: Tensor, points2d: Tensor) -> Tensor:
    """Pixel distance between each view's 2D joint and the projection of the 3D joint.

    points3d [B, J, 3] world mm; proj [B, V, 3, 4] (K [R | t]); points2d [B, V, J, 2] pixels.
    Returns [B, V, J] pixels (inf where the point lies on the camera's plane).
    """
    homog = torch.cat([points3d, torch.ones_like(points3d[..., :1])], dim=-1)   # [B, J, 4]
    image = torch.einsum("bvik,bjk->bvji", proj, homog)                          # [B, V, J, 3]
    depth = image[..., 2:]
    safe = torch.where(depth == 0, torch.ones_like(depth), depth)
    err = (image[..., :2] / safe - points2d).norm(dim=-1)
    return torch.where(depth[..., 0] == 0, torch.full_like(err, float("inf")), err)


def triangulate_rejecting(points2d: Tensor, proj: Tensor, confidences: Tensor,
                          reject_px: float, min_views: int = 2, rounds: int = 1
                          ) -> tuple[Tensor, Tensor, Tensor]:
    """Confidence-weighted DLT (pose3d.ops.triangulate), then up to `rounds` times per joint:
    if the worst used view's reprojection error exceeds `reject_px` pixels and more than
    `min_views` views are used, give that view zero weight and triangulate again.

    points2d [B, V, J, 2] pixels; proj [B, V, 3, 4]; confidences [B, V, J] (<= 0: unused).
    reject_px <= 0 is the plain triangulation. Returns (points3d [B, J, 3] world mm,
    valid [B, J] bool, the confidences used [B, V, J] with rejected views at 0).
    """
    if min_views < 2:
        raise ValueError(f"min_views must be at least 2, got {min_views}")
    points3d, valid = triangulate(points2d, proj, confidences, return_valid=True)
    if reject_px <= 0:
        return points3d, valid, confidences
    for _ in range(rounds):
        used = confidences > 0
        err = reprojection_error(points3d, proj.to(points3d.dtype), points2d.to(points3d.dtype))
        err = torch.where(used, err, torch.full_like(err, -1.0))
        worst, view = err.max(dim=1)                                              # [B, J]
        drop = valid & (worst > reject_px) & (used.sum(dim=1) > min_views)
        if not bool(drop.any()):
            break
        rejected = torch.nn.functional.one_hot(view, proj.shape[1]).permute(0, 2, 1).bool()
        confidences = confidences.masked_fill(rejected & drop[:, None], 0)
        again, again_valid = triangulate(points2d, proj, confidences, return_valid=True)
        points3d = torch.where(drop[..., None], again, points3d)
        valid = torch.where(drop, again_valid, valid)
    return points3d, valid, confidences
