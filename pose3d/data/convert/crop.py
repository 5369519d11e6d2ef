"""Cut one view out of a full camera frame: a square box resized to the model's input size,
with the camera updated to match.

The pixel map is the one `Camera.crop_and_resize` applies to K: `u' = (u - x0) * S / side`
on pixel indices, so a point projected through the returned camera lands on the same image
content as in the source frame. Parts of the box outside the frame are black.

A camera with lens distortion gets an undistorted crop: every crop pixel is sampled where
the lens put the ray that the cropped pinhole camera sends through it, so the stored camera
has zero distortion and projects a 3D point exactly where the image shows it (training
projects through K, R, t only). Boxes and 2D points are then in pinhole pixels of the full
frame: `undistort_points` / `undistort_box` take recorded pixels there.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pose3d.geometry import Camera

_CONVERGED = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-10)


def _padded_region(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """image[y0:y1, x0:x1] with zeros where the range leaves the image."""
    h, w = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + image.shape[2:], image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_image(image: np.ndarray, box: tuple[float, float, float, float],
               out_size: int) -> np.ndarray:
    """The square `box` (x0, y0, x1, y1 source pixels) of `image` [H, W, C] as an
    [out_size, out_size, C] image.

    A strong downscale first averages k x k pixel blocks (k = the integer part of the
    scale) so that the final bilinear warp does not alias; the block centres are tracked so
    the composed map stays exactly `u' = (u - x0) * out_size / (x1 - x0)`.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"crop box must have x1 > x0 and y1 > y0, got {box}")
    scale = out_size / (x1 - x0)
    scale_y = out_size / (y1 - y0)
    k = max(1, int(math.floor(1.0 / max(scale, scale_y))))
    ix0, iy0 = math.floor(x0), math.floor(y0)
    # Region wide enough to hold the box plus one pixel for interpolation, a multiple of k.
    width = k * math.ceil((math.ceil(x1) + 1 - ix0) / k)
    height = k * math.ceil((math.ceil(y1) + 1 - iy0) / k)
    region = _padded_region(image, ix0, iy0, ix0 + width, iy0 + height)
    if k > 1:
        region = cv2.resize(region, (width // k, height // k), interpolation=cv2.INTER_AREA)
    # Region pixel j covers source pixels ix0 + j*k ... + k - 1: its centre is below.
    offset = (k - 1) / 2.0
    affine = np.array([[scale * k, 0.0, scale * (ix0 + offset - x0)],
                       [0.0, scale_y * k, scale_y * (iy0 + offset - y0)]])
    return cv2.warpAffine(region, affine, (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_view(image: np.ndarray, camera: Camera, box: tuple[float, float, float, float],
              out_size: int) -> tuple[np.ndarray, Camera]:
    """The square `box` (x0, y0, x1, y1, pinhole pixels of the full frame) of `image`
    [H, W, C] as an [out_size, out_size, C] crop, and its camera: K moved and scaled, R and t
    kept, distortion zero (the crop is undistorted when the camera has any)."""
    cropped = camera.crop_and_resize(box, out_size).undistorted()
    if not camera.dist.any():
        return crop_image(image, box, out_size), cropped
    return _undistorted_crop(image, camera, cropped, out_size), cropped


def _undistorted_crop(image: np.ndarray, camera: Camera, cropped: Camera,
                      out_size: int) -> np.ndarray:
    """Resample `image` (seen through `camera`, distorted) as the pinhole `cropped` sees it.
    A strong downscale first averages k x k blocks, as crop_image does, against aliasing."""
    map_x, map_y = cv2.initUndistortRectifyMap(camera.K, camera.dist, None, cropped.K,
                                               (out_size, out_size), cv2.CV_32FC1)
    h, w = image.shape[:2]
    scale = cropped.K[0, 0] / camera.K[0, 0]
    k = max(1, int(math.floor(1.0 / scale)))
    # the source pixels the map reads, plus one for interpolation, within a border of the frame
    lo_x = int(math.floor(np.clip(map_x.min(), -2 * k, w + 2 * k))) - 1
    lo_y = int(math.floor(np.clip(map_y.min(), -2 * k, h + 2 * k))) - 1
    hi_x = int(math.ceil(np.clip(map_x.max(), -2 * k, w + 2 * k))) + 2
    hi_y = int(math.ceil(np.clip(map_y.max(), -2 * k, h + 2 * k))) + 2
    width, height = k * math.ceil((hi_x - lo_x) / k), k * math.ceil((hi_y - lo_y) / k)
    region = _padded_region(image, lo_x, lo_y, lo_x + width, lo_y + height)
    if k > 1:
        region = cv2.resize(region, (width // k, height // k), interpolation=cv2.INTER_AREA)
    # region pixel j is the mean of source pixels lo + j*k ... + k - 1, centred as below
    offset = (k - 1) / 2.0
    map_x = (map_x - (lo_x + offset)) / k
    map_y = (map_y - (lo_y + offset)) / k
    return cv2.remap(region, map_x.astype(np.float32), map_y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def undistort_points(points: np.ndarray, camera: Camera) -> np.ndarray:
    """Recorded pixels [..., 2] of `camera` -> where its pinhole camera (same K, no
    distortion) puts the same rays, px (NaN stays NaN). OpenCV's iteration, run to
    convergence rather than its default 5 steps."""
    uv = np.asarray(points, dtype=np.float64)
    if not camera.dist.any():
        return uv.copy()
    out = cv2.undistortImagePoints(uv.reshape(-1, 1, 2), camera.K, camera.dist,
                                   criteria=_CONVERGED)
    return out.reshape(uv.shape)


def undistort_box(box: tuple[float, float, float, float], camera: Camera, samples: int = 9
                  ) -> tuple[float, float, float, float]:
    """The pinhole-pixel box (x0, y0, x1, y1) holding a box drawn on the recorded image:
    the bounds of its undistorted outline."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not camera.dist.any():
        return x0, y0, x1, y1
    s = np.linspace(0.0, 1.0, samples)
    xs, ys = x0 + s * (x1 - x0), y0 + s * (y1 - y0)
    outline = np.concatenate([np.stack([xs, np.full_like(xs, y0)], -1),
                              np.stack([xs, np.full_like(xs, y1)], -1),
                              np.stack([np.full_like(ys, x0), ys], -1),
                              np.stack([np.full_like(ys, x1), ys], -1)])
    uv = undistort_points(outline, camera)
    return (float(uv[:, 0].min()), float(uv[:, 1].min()), float(uv[:, 0].max()),
            float(uv[:, 1].max()))


def scale_box(box: tuple[float, float, float, float], factor: float
              ) -> tuple[float, float, float, float]:
    """The box grown (or shrunk) by `factor` about its centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    return cx - hw, cy - hh, cx + hw, cy + hh
