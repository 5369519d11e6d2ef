"""Prediction on a user's own footage with a trained checkpoint (the `pose3d predict`
command and the calls under it, for notebooks).

Top layer: may import anything in pose3d; only pose3d.cli imports it.
- `predict_images(model_or_path, images, boxes, intrinsics, root_depth)`: single view.
- `predict_views(model_or_path, views, cameras, boxes)`: a calibrated rig, world mm.
- `make_predictor(path, kind, device)`: load a checkpoint once, pass it to either call.
"""

from pose3d.predict.multi_view import predict_views
from pose3d.predict.runner import Predictor, make_predictor
from pose3d.predict.single_view import predict_images

__all__ = ["Predictor", "make_predictor", "predict_images", "predict_views"]
