"""Python face of the custom ops (torch.ops.pose3d.*) and their pure-PyTorch references."""

from pose3d.ops.soft_argmax import (
    soft_argmax_2d,
    soft_argmax_2d_reference,
    soft_argmax_3d,
    soft_argmax_3d_reference,
)
from pose3d.ops.triangulate import (
    triangulate,
    triangulate_loop_reference,
    triangulate_svd_reference,
)

__all__ = [
    "soft_argmax_2d", "soft_argmax_2d_reference", "soft_argmax_3d", "soft_argmax_3d_reference",
    "triangulate", "triangulate_loop_reference", "triangulate_svd_reference",
]
