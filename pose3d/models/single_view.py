"""The single-view integral regression model F_sv (docs/design.md, eqs. 1-2).

Pixel convention (shared with the multi-view model and pose3d.geometry.world_to_heatmap):
heatmap coordinate x corresponds to input-image pixel u = x * stride, i.e. u' = u / s
(eq. 6). Voxel index i therefore sits at pixel i * s; training targets and decoding use the
same map, so no half-voxel offset enters anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from pose3d.geometry import HeatmapSpace
from pose3d.models.backbone import TRUNK_STRIDE, build_backbone, check_images
from pose3d.models.heads import DeconvHead
from pose3d.ops.soft_argmax import soft_argmax_3d
from pose3d.skeleton import NUM_JOINTS


class SingleViewModel(nn.Module):
    """Images [N, 3, H, W] -> joints in heatmap voxels [N, J, 3] as (x, y, z).

    ResNet trunk, `num_deconv` deconvolutions of `deconv_channels`, a 1x1 conv to J * D
    channels read as J volumes [D, H/s, W/s], and soft-argmax over each volume (eqs. 1-2).
    Heatmap stride s = 32 / 2^num_deconv image pixels per voxel (4 for the paper's 3 deconvs).
    """

    def __init__(self, backbone: str = "resnet50", num_joints: int = NUM_JOINTS,
                 depth_bins: int = 64, deconv_channels: int = 256, num_deconv: int = 3,
                 weights_path: str | Path | None = None,
                 depth_range_mm: float = 2000.0) -> None:
        super().__init__()
        if num_joints <= 0 or depth_bins <= 0:
            raise ValueError(f"num_joints and depth_bins must be positive, got {num_joints}, "
                             f"{depth_bins}")
        self.num_joints = num_joints
        self.depth_bins = depth_bins
        self.depth_range_mm = float(depth_range_mm)
        self.trunk = build_backbone(backbone, weights_path)
        self.head = DeconvHead(self.trunk.out_channels, num_joints * depth_bins, num_deconv,
                               deconv_channels)
        self.stride = TRUNK_STRIDE / 2 ** num_deconv

    def heatmap_space(self, image_size: int | tuple[int, int]) -> HeatmapSpace:
        """The HeatmapSpace of this model's output for square (or (H, W)) input images."""
        sizes = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if any(s <= 0 or s % TRUNK_STRIDE for s in sizes):
            raise ValueError(f"image size must be a positive multiple of {TRUNK_STRIDE}, "
                             f"got {image_size}")
        return HeatmapSpace(self.stride, self.depth_bins, self.depth_range_mm)

    def forward(self, images: Tensor, return_heatmaps: bool = False) -> dict[str, Tensor]:
        """Returns coords [N, J, 3] float32 voxels; with `return_heatmaps` also the logit
        heatmaps [N, J, D, H/s, W/s] (in the head's dtype: bf16 under autocast)."""
        check_images(images)
        maps = self.head(self.trunk(images))
        n, _, h, w = maps.shape
        # No cast or copy: the op reads bf16 (accumulating in float32) and walks each volume
        # along whichever of its axes has unit stride. Channels_last maps [N, h, w, J*D] in
        # memory view as [N, J, D, h, w] with D of unit stride, which the op reads where the
        # head wrote them; its gradient comes back in the same layout.
        heatmaps = maps.reshape(n, self.num_joints, self.depth_bins, h, w)
        out = {"coords": soft_argmax_3d(heatmaps)}
        if return_heatmaps:
            out["heatmaps"] = heatmaps
        return out

    @torch.no_grad()
    def init_from_multi_view(self, mv_state: Mapping[str, Tensor]) -> None:
        """Start from a multi-view model's 2D skill: copy its trunk and deconvolutions, and
        repeat its 1x1 layer over the D depth bins, so that each volume's logits are the 2D
        heatmap at every depth. The x, y of soft-argmax then equal the 2D model's joints and z
        starts at the centre (the root's depth); training only has to learn depth.

        `mv_state` is a MultiViewTriangulationModel state dict with the same backbone,
        deconvolutions and number of joints (its confidence head is not used).
        """
        own = self.state_dict()
        missing = [k for k in own if k not in mv_state]
        if missing:
            raise ValueError(f"not a multi-view model state with this backbone and head: "
                             f"{len(missing)} tensors missing (first {missing[0]!r})")
        new = {}
        for k in own:
            src = mv_state[k]
            if k.startswith("head.final."):
                src = src.repeat_interleave(self.depth_bins, dim=0)  # J -> J * D channels
            if src.shape != own[k].shape:
                raise ValueError(f"multi-view tensor {k} has shape {list(mv_state[k].shape)}, "
                                 f"which does not fit this model's {list(own[k].shape)} "
                                 f"(same backbone, deconv channels and joints needed)")
            new[k] = src
        self.load_state_dict(new)

