"""Single-view prediction: one person per frame, cropped and resized by the training code
(`crop_image`, `Camera.crop_and_resize`), F_sv's heatmap coordinates taken back to camera
millimetres with Π (docs/design.md eqs. 4-8) and to the input's pixels.

A single view does not observe the root's depth. When it is not given, the root-relative
pose is computed at the depth where the skeleton's 16 bones add up to REFERENCE_BONES_MM;
without intrinsics the camera is assumed to have focal length DEFAULT_FOCAL x the frame's
larger side and its principal point at the frame's centre. Both only set the scale of the
root-relative x, y; the absolute camera-frame pose is returned only when intrinsics and the
root depth are both given.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from pose3d.data.convert.crop import crop_image
from pose3d.geometry import (
    Camera,
    HeatmapSpace,
    camera_to_pixels,
    heatmap_to_camera,
    square_about_centre,
)
from pose3d.predict.inputs import Box, frame_box
from pose3d.predict.runner import Predictor, in_batches, make_predictor
from pose3d.skeleton import BONES, ROOT

# Sum of the 16 bone lengths of the synthetic studio's average body (1.75 m stature).
REFERENCE_BONES_MM = 4150.0
# Focal length / larger image side: the Human3.6M cameras' 1145 px on 1000 px frames.
DEFAULT_FOCAL = 1.15


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """K [3, 3] of an assumed camera: focal DEFAULT_FOCAL x max(W, H), centred."""
    f = DEFAULT_FOCAL * max(width, height)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def crop_frame(image: np.ndarray, box: Box, size: int) -> tuple[np.ndarray, Box]:
    """The square crop [size, size, 3] the model reads, and the square box it came from."""
    sq = square_about_centre(box)
    return crop_image(image, sq, size), sq


def bone_length_depth(coords: torch.Tensor, K_crop: torch.Tensor, space: HeatmapSpace,
                      target_mm: float = REFERENCE_BONES_MM, iters: int = 60) -> torch.Tensor:
    """The root depth [N] mm at which heatmap coords [N, J, 3] give a skeleton whose bones
    add up to `target_mm` (bisection: the length grows with the depth)."""
    lo = torch.full(coords.shape[:1], 100.0, dtype=torch.float64)
    hi = torch.full(coords.shape[:1], 1e5, dtype=torch.float64)
    parent, child = (torch.tensor(i) for i in zip(*BONES))
    for _ in range(iters):
        mid = (lo * hi).sqrt()  # bisect in log depth: the range spans four decades
        cam = heatmap_to_camera(coords, mid, K_crop, space)
        length = (cam[:, child] - cam[:, parent]).norm(dim=-1).sum(-1)
        short = length < target_mm
        lo, hi = torch.where(short, mid, lo), torch.where(short, hi, mid)
    return (lo * hi).sqrt()


def decode(coords: np.ndarray, boxes: np.ndarray, K: np.ndarray, space: HeatmapSpace,
           image_size: int, root_depth: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Heatmap coords [N, J, 3] voxels of crops of `boxes` [N, 4] (square, input pixels) of
    frames with intrinsics K [N, 3, 3] -> joints2d [N, J, 2] input pixels, joints3d_rel
    [N, J, 3] root-relative camera mm, root_depth [N] the root's (pelvis') camera depth mm
    (given or estimated) and, when `root_depth` is given, joints3d_cam [N, J, 3] camera mm."""
    n = len(coords)
    crop_K = np.stack([Camera(K[i], np.eye(3), np.zeros(3)).crop_and_resize(
        tuple(boxes[i]), image_size).K for i in range(n)]) if n else np.zeros((0, 3, 3))
    c = torch.as_tensor(coords, dtype=torch.float64)
    kc = torch.as_tensor(crop_K)
    # Π puts depth z' = D/2 at the depth it is given; the predicted root may sit off that
    # centre, so Π gets the depth that puts the root itself where it belongs.
    root_offset = c[:, ROOT, 2] / space.depth_bins * space.depth_range_mm \
        - space.depth_range_mm / 2
    if root_depth is None:
        centre = bone_length_depth(c, kc, space)
    else:
        centre = torch.tensor(np.broadcast_to(root_depth, (n,)), dtype=torch.float64) \
            - root_offset
    cam = heatmap_to_camera(c, centre, kc, space)
    out = {"joints2d": camera_to_pixels(cam, torch.as_tensor(K)).numpy(),
           "joints3d_rel": (cam - cam[:, ROOT:ROOT + 1]).numpy(),
           "root_depth": cam[:, ROOT, 2].numpy()}
    if root_depth is not None:
        out["joints3d_cam"] = cam.numpy()
    return out


def prepared_frames(frames: Iterable[tuple[str, np.ndarray]], boxes, size: int, where: str
                    ) -> Iterator[dict]:
    """Per frame: name, the frame, its square box and crop (run in the decode thread)."""
    for index, (name, image) in enumerate(frames):
        h, w = image.shape[:2]
        box = frame_box(boxes, name, (w, h), where, index)
        start = time.perf_counter()
        crop, sq = crop_frame(image, box, size)
        yield {"name": name, "image": image, "box": sq, "crop": crop,
               "crop_s": time.perf_counter() - start}


def run_batches(predictor: Predictor, items: Iterable[dict], batch_size: int,
                intrinsics: np.ndarray | None = None, root_depth=None,
                total: int | None = None, progress: bool = True, desc: str = "predict"
                ) -> Iterator[tuple[list[dict], dict[str, np.ndarray]]]:
    """Batches of prepared frames through F_sv: yields (the batch's items, decoded arrays
    for them, see `decode`, plus coords [B, J, 3] voxels, box [B, 4] and K [B, 3, 3])."""
    space = predictor.model.heatmap_space(predictor.image_size)
    return in_batches(items, batch_size,
                      lambda batch: _run(predictor, batch, space, intrinsics, root_depth),
                      total, progress, desc)


@torch.no_grad()
def _run(predictor: Predictor, batch: list[dict], space: HeatmapSpace,
         intrinsics: np.ndarray | None, root_depth) -> dict[str, np.ndarray]:
    crops = np.stack([b["crop"] for b in batch])
    with predictor.timed(), predictor.autocast():
        coords = predictor.model(predictor.to_input(crops))["coords"].float().cpu().numpy()
    boxes = np.array([b["box"] for b in batch], dtype=np.float64)
    K = np.stack([intrinsics if intrinsics is not None
                  else default_intrinsics(b["image"].shape[1], b["image"].shape[0])
                  for b in batch])
    depth = None
    if root_depth is not None:
        depth = np.asarray([b["root_depth"] for b in batch]) if "root_depth" in batch[0] \
            else np.broadcast_to(np.asarray(root_depth, dtype=np.float64), (len(batch),))
    out = decode(coords, boxes, K, space, predictor.image_size, depth)
    if intrinsics is None:  # an assumed camera gives no absolute position
        out.pop("joints3d_cam", None)
    return {**out, "coords": coords, "box": boxes, "K": K}


def predict_images(model_or_path, images: Sequence[np.ndarray],
                   boxes: Sequence[Box] | Box | None = None,
                   intrinsics: np.ndarray | None = None,
                   root_depth: float | Sequence[float] | None = None, *,
                   batch_size: int = 16, device: str | torch.device | None = None,
                   image_size: int | None = None, progress: bool = False
                   ) -> dict[str, np.ndarray]:
    """F_sv on uint8 RGB frames [H, W, 3] (one person each), for notebooks.

    model_or_path: a single-view checkpoint path, SavedModel, SingleViewModel (then pass
    image_size) or Predictor. boxes: one (x0, y0, x1, y1) per image, one for all, or None
    (whole frame). intrinsics: K [3, 3] of the frames (else assumed, see the module doc).
    root_depth: camera mm of the pelvis, one or per image (else estimated from bone lengths).

    Returns joints2d [N, J, 2] input pixels, joints3d_rel [N, J, 3] root-relative camera mm,
    root_depth [N] mm, coords [N, J, 3] heatmap voxels, box [N, 4] the square crop boxes,
    K [N, 3, 3]; with intrinsics and root_depth also joints3d_cam [N, J, 3] camera mm."""
    depth = np.asarray(root_depth if root_depth is not None else 1.0, dtype=np.float64)
    if not (np.isfinite(depth).all() and (depth > 0).all()):
        raise ValueError(f"root_depth is the pelvis' depth in front of the camera: positive "
                         f"mm, got {root_depth}")
    predictor = make_predictor(model_or_path, "single_view", device, image_size)
    images = list(images)
    for i, im in enumerate(images):
        if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3
                and im.dtype == np.uint8):
            raise ValueError(f"image {i} must be uint8 RGB [H, W, 3], got "
                             f"{getattr(im, 'dtype', type(im).__name__)} "
                             f"{list(getattr(im, 'shape', []))}")
    names = [str(i) for i in range(len(images))]
    if boxes is not None and not (len(boxes) == 4 and np.isscalar(boxes[0])):
        if len(boxes) != len(images):
            raise ValueError(f"got {len(boxes)} boxes for {len(images)} images")
        boxes = {n: tuple(float(v) for v in b) for n, b in zip(names, boxes)}
    items = list(prepared_frames(zip(names, images), boxes, predictor.image_size, "images"))
    if root_depth is not None:
        depths = np.broadcast_to(np.asarray(root_depth, dtype=np.float64), (len(items),))
        for item, d in zip(items, depths):
            item["root_depth"] = float(d)
    parts = [out for _, out in run_batches(predictor, items, batch_size, intrinsics,
                                           root_depth, len(items), progress)]
    return concat(parts)


def concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-batch arrays joined along the frame axis."""
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

