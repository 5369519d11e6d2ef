"""pose3d: multi-view semi-supervised training of single-view 3D human pose models."""

__version__ = "0.1.0"
