"""Cut one view out of a full camera frame: a square box resized to the model's input size,
with the camera updated to match.

The pixel map is the one `Camera.crop_and_resize` applies to K: `u' = (u - x0) * S / side`
on pixel indices, so a point projected through the returned camera lands on the same image
content as in the source frame. Parts of the box outside the frame are black.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pose3d.geometry import Camera


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
    """`crop_image` and the matching camera (K moved and scaled; R, t, dist kept)."""
    return crop_image(image, box, out_size), camera.crop_and_resize(box, out_size)


def scale_box(box: tuple[float, float, float, float], factor: float
              ) -> tuple[float, float, float, float]:
    """The box grown (or shrunk) by `factor` about its centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    return cx - hw, cy - hh, cx + hw, cy + hh
