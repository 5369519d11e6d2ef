"""The multi-view model F_mv: algebraic triangulation (docs/design.md, eq. 3).

Per view: ResNet trunk -> deconv head -> J 2D heatmaps -> 2D soft-argmax, and a confidence
head (pooling + MLP + sigmoid) per joint. Confidence-weighted DLT over the valid views gives
the 3D pose in world mm. 2D joints are returned in input-image pixels with the convention of
the single-view model: u = x * stride (x the heatmap coordinate).

Two options serve the offline labelling (docs/design.md, "P-GT"): `flip_test` averages the
2D joints and confidences with those read from the mirrored images, and `reject_px` drops,
per joint, a view whose 2D joint lies that many pixels off the triangulated point
(pose3d.geometry.robust_triangulation).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from pose3d.geometry import project, projection_matrix
from pose3d.geometry.flip import unflip_joint_values, unflip_points2d
from pose3d.geometry.robust_triangulation import triangulate_rejecting
from pose3d.models.backbone import TRUNK_STRIDE, build_backbone, check_images
from pose3d.models.heads import ConfidenceHead, DeconvHead
from pose3d.ops.soft_argmax import soft_argmax_2d
from pose3d.skeleton import NUM_JOINTS


class MultiViewTriangulationModel(nn.Module):
    """Views [B, V, 3, H, W] + cameras -> world joints [B, J, 3] mm by weighted DLT."""

    def __init__(self, backbone: str = "resnet50", num_joints: int = NUM_JOINTS,
                 deconv_channels: int = 256, num_deconv: int = 3,
                 weights_path: str | Path | None = None, confidence_hidden: int = 256) -> None:
        super().__init__()
        if num_joints <= 0:
            raise ValueError(f"num_joints must be positive, got {num_joints}")
        self.num_joints = num_joints
        self.trunk = build_backbone(backbone, weights_path)
        self.head = DeconvHead(self.trunk.out_channels, num_joints, num_deconv, deconv_channels)
        self.confidence = ConfidenceHead(self.trunk.out_channels, num_joints, confidence_hidden)
        self.stride = TRUNK_STRIDE / 2 ** num_deconv

    def predict_2d(self, images: Tensor, return_heatmaps: bool = False,
                   sharpen: float = 1.0) -> tuple[Tensor, ...]:
        """Images [N, 3, H, W] -> (2D joints [N, J, 2] heatmap pixels, confidences [N, J]),
        both float32, and with return_heatmaps the logits [N, J, h, w] they were read from.
        sharpen: the joints are the soft-argmax of sharpen x the logits (1: as trained; > 1
        weighs the peak more than the heatmap's far tail); the returned logits are the
        model's either way."""
        features = self.trunk(images)
        heatmaps = self.head(features)
        coords = soft_argmax_2d(heatmaps * sharpen if sharpen != 1.0 else heatmaps)
        out = (coords, self.confidence(features))
        return (*out, heatmaps) if return_heatmaps else out

    def joints_2d(self, images: Tensor, flip_test: bool = False,
                  return_heatmaps: bool = False, sharpen: float = 1.0) -> tuple[Tensor, ...]:
        """Images [N, 3, H, W] -> (2D joints [N, J, 2] input pixels, confidences [N, J]),
        and with return_heatmaps the originals' heatmap logits [N, J, h, w].

        flip_test: also read the horizontally mirrored images (one batch with the originals)
        and average both readings, mapped back to the original image and sides.
        sharpen: as in `predict_2d`.
        """
        batch = torch.cat([images, images.flip(-1)]) if flip_test else images
        coords, confidences, *heatmaps = self.predict_2d(batch, return_heatmaps=return_heatmaps,
                                                         sharpen=sharpen)
        joints = coords * self.stride
        n = images.shape[0]
        if flip_test:
            mirrored = unflip_points2d(joints[n:], images.shape[-1])
            joints = (joints[:n] + mirrored) / 2
            confidences = (confidences[:n] + unflip_joint_values(confidences[n:])) / 2
        return (joints, confidences, *(h[:n] for h in heatmaps))

    def forward(self, images: Tensor, K: Tensor, R: Tensor, t: Tensor,
                valid: Tensor | None = None, *, flip_test: bool = False,
                reject_px: float = 0.0, min_views: int = 2,
                return_heatmaps: bool = False, sharpen: float = 1.0) -> dict[str, Tensor]:
        """images [B, V, 3, H, W]; cameras of the input images K [B, V, 3, 3], R [B, V, 3, 3],
        t [B, V, 3] (world mm -> camera mm); valid [B, V] bool (default: all views).
        flip_test: average the 2D joints with the mirrored images' (see `joints_2d`);
        reject_px > 0: per joint, leave out the view reprojecting worst if it is more than
        reject_px pixels off and more than `min_views` views remain (once);
        return_heatmaps: also return the 2D heatmap logits (for a loss on them);
        sharpen: the 2D joints are the soft-argmax of sharpen x the logits (`predict_2d`).

        Returns joints3d [B, J, 3] world mm, joints2d [B, V, J, 2] input pixels,
        confidences [B, V, J] (0 for invalid and rejected views), valid3d [B, J] bool (at
        least two valid views and a finite solution). All float32, also under autocast.
        With return_heatmaps, also heatmaps [B, V, J, h, w]: logits in the backbone's dtype,
        h x w = input size / stride.
        """
        check_images(images, "[B, V, 3, H, W]")
        b, v = images.shape[:2]
        valid = _check_views(b, v, K, R, t, valid, images.device)
        joints2d, confidences, *heatmaps = self.joints_2d(images.flatten(0, 1), flip_test,
                                                          return_heatmaps, sharpen)
        joints2d = joints2d.reshape(b, v, self.num_joints, 2)
        confidences = confidences.reshape(b, v, self.num_joints) * valid.unsqueeze(-1)
        # DLT on pixels and millimetres needs float32 even when the backbone ran in bf16.
        with torch.autocast(images.device.type, enabled=False):
            proj = projection_matrix(K.float(), R.float(), t.float())
            joints3d, solved, confidences = triangulate_rejecting(
                joints2d.float(), proj, confidences.float(), reject_px, min_views)
        valid3d = solved & (valid.sum(dim=1) >= 2).unsqueeze(-1)
        out = {"joints3d": joints3d, "joints2d": joints2d, "confidences": confidences,
               "valid3d": valid3d}
        if return_heatmaps:
            out["heatmaps"] = heatmaps[0].unflatten(0, (b, v))
        return out


def _check_views(b: int, v: int, K: Tensor, R: Tensor, t: Tensor, valid: Tensor | None,
                 device: torch.device) -> Tensor:
    """Check the cameras and view mask against B x V views; return valid [B, V] bool."""
    for name, x, tail in (("K", K, (3, 3)), ("R", R, (3, 3)), ("t", t, (3,))):
        if not isinstance(x, Tensor) or tuple(x.shape) != (b, v, *tail):
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape {[b, v, *tail]} to match the images, "
                             f"got {got}")
    if valid is None:
        return torch.ones(b, v, dtype=torch.bool, device=device)
    if not isinstance(valid, Tensor) or tuple(valid.shape) != (b, v) or valid.dtype != torch.bool:
        got = (f"{list(valid.shape)} {valid.dtype}" if isinstance(valid, Tensor)
               else type(valid).__name__)
        raise ValueError(f"valid must be a bool tensor of shape {[b, v]}, got {got}")
    return valid


def reprojection_residual(out: dict, batch: dict) -> Tensor:
    """How far the views of each tuple disagree: the mean distance (input pixels) between
    the triangulated joints reprojected into each valid view and that view's 2D joints,
    [B]. out: the model's output (joints3d [B, J, 3], joints2d [B, V, J, 2]); batch: the
    cameras K [B, V, 3, 3], R, t and valid [B, V] bool it ran on."""
    valid = batch["valid"]
    views = valid.shape[1]
    points = out["joints3d"].float()[:, None].expand(-1, views, -1, -1)
    uv = project(points, batch["K"].float(), batch["R"].float(), batch["t"].float())
    err = (uv - out["joints2d"].float()).norm(dim=-1).mean(dim=-1)  # [B, V]
    err = torch.where(valid, err, torch.zeros_like(err))
    return err.sum(dim=1) / valid.sum(dim=1).clamp(min=1)


def read_batch(model: nn.Module, batch: dict, device: str | torch.device, *,
               flip_test: bool = False, reject_px: float = 0.0, sharpen: float = 1.0
               ) -> tuple[dict, list[float]]:
    """F_mv on a loader batch (images [B, V, 3, H, W], K, R, t, valid) moved to `device`,
    with the P-GT stage's labelling options: its output and each tuple's reprojection
    residual (input px, reprojection_residual)."""
    on = {k: batch[k].to(device) for k in ("images", "K", "R", "t", "valid")}
    out = model(*on.values(), flip_test=flip_test, reject_px=reject_px, sharpen=sharpen)
    return out, reprojection_residual(out, on).cpu().tolist()
