"""Multi-view prediction on a calibrated rig: each view undistorted (OpenCV) and cropped by
the training code, F_mv's 2D joints triangulated (confidence-weighted DLT, docs/design.md
step 1) into world millimetres, and its 2D joints taken back to each input's (distorted)
pixels."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch

from pose3d.geometry import Camera, camera_to_pixels, pixels_to_camera
from pose3d.predict.inputs import Box, check_baseline, frame_box
from pose3d.predict.runner import Predictor, in_batches, make_predictor
from pose3d.predict.single_view import concat, crop_frame


def undistort(image: np.ndarray, camera: Camera) -> np.ndarray:
    """The pinhole image of a camera with lens distortion (same K); as is without any."""
    if not np.any(camera.dist):
        return image
    return cv2.undistort(image, camera.K, camera.dist)


def prepared_views(frames: Iterable[Sequence[tuple[str, np.ndarray]]], cameras: list[Camera],
                   boxes, size: int, where: Sequence[str]) -> Iterator[dict]:
    """Per synchronised frame: its name (the first view's), the V images, square boxes
    [V, 4], crops [V, S, S, 3] and the crops' pinhole cameras (run in the decode thread).
    `boxes`: None, one box, or per view a box or {frame name: box}."""
    for index, views in enumerate(frames):
        crops, sq_boxes, crop_cams, images = [], [], [], []
        for v, ((name, image), cam) in enumerate(zip(views, cameras)):
            h, w = image.shape[:2]
            view_boxes = boxes[v] if isinstance(boxes, list) else boxes
            box = frame_box(view_boxes, name, (w, h), where[v], index)
            crop, sq = crop_frame(undistort(image, cam), box, size)
            crops.append(crop)
            sq_boxes.append(sq)
            crop_cams.append(cam.undistorted().crop_and_resize(sq, size))
            images.append(image)
        yield {"name": views[0][0], "images": images, "box": np.array(sq_boxes),
               "crops": np.stack(crops), "cameras": crop_cams}


def run_batches(predictor: Predictor, items: Iterable[dict], cameras: list[Camera],
                batch_size: int, total: int | None = None, progress: bool = True,
                desc: str = "rig") -> Iterator[tuple[list[dict], dict[str, np.ndarray]]]:
    """Batches of synchronised frames through F_mv: yields (items, arrays) with joints3d
    [B, J, 3] world mm, valid3d [B, J], joints2d [B, V, J, 2] input pixels, confidences
    [B, V, J] and box [B, V, 4]."""
    return in_batches(items, batch_size, lambda batch: _run(predictor, batch, cameras), total,
                      progress, desc)


@torch.no_grad()
def _run(predictor: Predictor, batch: list[dict], cameras: list[Camera]
         ) -> dict[str, np.ndarray]:
    b, v = len(batch), len(cameras)
    crops = np.stack([item["crops"] for item in batch])  # [B, V, S, S, 3]
    size = crops.shape[2]
    K, R, t = (torch.tensor(np.array([[getattr(c, a) for c in item["cameras"]]
                                      for item in batch]), dtype=torch.float32,
                            device=predictor.device) for a in ("K", "R", "t"))
    with predictor.timed(), predictor.autocast():
        images = predictor.to_input(crops.reshape(b * v, size, size, 3))
        out = predictor.model(images.view(b, v, 3, size, size), K, R, t)
    crop2d = out["joints2d"].double().cpu()
    # Crop pixels -> rays of the crop's pinhole camera -> the input's (distorted) pixels.
    rays = pixels_to_camera(crop2d, torch.ones(crop2d.shape[:-1], dtype=torch.float64),
                            K.double().cpu())
    full_K = torch.tensor(np.array([c.K for c in cameras]))
    dist = torch.tensor(np.array([c.dist for c in cameras]))
    joints2d = camera_to_pixels(rays, full_K, dist)
    return {"joints3d": out["joints3d"].double().cpu().numpy(),
            "valid3d": out["valid3d"].cpu().numpy(),
            "joints2d": joints2d.numpy(),
            "confidences": out["confidences"].float().cpu().numpy(),
            "box": np.stack([item["box"] for item in batch])}


def predict_views(model_or_path, views: Sequence[Sequence[np.ndarray]],
                  cameras: Sequence[Camera | dict],
                  boxes: Sequence[Sequence[Box] | Box | None] | Box | None = None, *,
                  batch_size: int = 8, device: str | torch.device | None = None,
                  image_size: int | None = None, progress: bool = False
                  ) -> dict[str, np.ndarray]:
    """F_mv on a rig, for notebooks. views[v][t]: uint8 RGB frame t of camera v (same T for
    every camera); cameras: Camera (or its dict: K, R, t, dist) per view, world mm.
    boxes: None (whole frames), one box for all, or per view None / one box / T boxes.

    Returns joints3d [T, J, 3] world mm, valid3d [T, J], joints2d [T, V, J, 2] input pixels,
    confidences [T, V, J] and box [T, V, 4] (the square crops)."""
    predictor = make_predictor(model_or_path, "multi_view", device, image_size)
    cams = [c if isinstance(c, Camera) else Camera.from_dict({"image_size": None, **c})
            for c in cameras]
    if len(views) != len(cams) or len(cams) < 2:
        raise ValueError(f"need one frame list per camera (at least two): got {len(views)} "
                         f"views and {len(cams)} cameras")
    check_baseline(cams, "cameras")
    lengths = {len(v) for v in views}
    if len(lengths) != 1:
        raise ValueError(f"every view needs the same number of frames, got {sorted(lengths)}")
    (t,) = lengths
    names = [str(i) for i in range(t)]
    if boxes is not None and not (len(boxes) == 4 and np.isscalar(boxes[0])):
        boxes = [_view_boxes(b, names) for b in boxes]
    frames = (tuple((names[i], views[v][i]) for v in range(len(cams))) for i in range(t))
    items = prepared_views(frames, cams, boxes, predictor.image_size,
                           [f"view {v}" for v in range(len(cams))])
    return concat([out for _, out in run_batches(predictor, items, cams, batch_size, t,
                                                 progress)])


def _view_boxes(boxes, names: list[str]):
    if boxes is None or (len(boxes) == 4 and np.isscalar(boxes[0])):
        return boxes
    if len(boxes) != len(names):
        raise ValueError(f"got {len(boxes)} boxes for {len(names)} frames of a view")
    return {n: tuple(float(x) for x in b) for n, b in zip(names, boxes)}
