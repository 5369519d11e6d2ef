"""One calibrated camera (numpy, float64), for data generation and dataset conversion.

OpenCV convention: `x_cam = R X + t` with X in world mm, K in pixels, distortion
(k1, k2, p1, p2, k3). Training code works on batched tensors (pose3d.geometry.projection);
this class is the per-camera record that shards store, and it projects through the same
functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pose3d.geometry import projection


def _as_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"camera {name} must have shape {list(shape)}, got {list(arr.shape)}")
    return arr


@dataclass
class Camera:
    """K [3, 3] pixels, R [3, 3], t [3] mm (world -> camera), dist [5], image size (w, h)."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    image_size: tuple[int, int] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.K = _as_array("K", self.K, (3, 3))
        self.R = _as_array("R", self.R, (3, 3))
        self.t = _as_array("t", self.t, (3,))
        self.dist = _as_array("dist", self.dist, (5,))
        projection.validate_cameras(*(torch.from_numpy(a) for a in (self.K, self.R, self.t)),
                                    dist=torch.from_numpy(self.dist))

    @classmethod
    def from_center(cls, K, R_cam_to_world, center_mm, **kwargs) -> Camera:
        """A camera from its orientation (camera -> world) and its centre in world mm."""
        R = np.asarray(R_cam_to_world, dtype=np.float64).T
        return cls(K=K, R=R, t=-R @ np.asarray(center_mm, dtype=np.float64), **kwargs)

    @property
    def center(self) -> np.ndarray:
        """Optical centre in world mm [3]."""
        return -self.R.T @ self.t

    @property
    def P(self) -> np.ndarray:
        """Projection matrix K [R | t], [3, 4]."""
        return self.K @ np.concatenate([self.R, self.t[:, None]], axis=1)

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """World mm [..., N, 3] -> camera mm [..., N, 3]."""
        return self._call(projection.world_to_camera, points, self.R, self.t)

    def project(self, points: np.ndarray, distort: bool = True) -> np.ndarray:
        """World mm [..., N, 3] -> pixels [..., N, 2], with distortion unless told not to."""
        dist = self.dist if distort else None
        return self._call(projection.project, points, self.K, self.R, self.t, dist)

    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Undistorted pixels [..., N, 2] at camera depth [..., N] mm -> world mm [..., N, 3]."""
        return self._call(projection.unproject, uv, depth, self.K, self.R, self.t)

    def crop_and_resize(self, box: tuple[float, float, float, float],
                        out_size: int | tuple[int, int]) -> Camera:
        """The camera of the image cropped to `box` (x0, y0, x1, y1 pixels) then resized to
        `out_size` (square side or (w, h)). Distortion is kept: it acts before K."""
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"crop box must have x1 > x0 and y1 > y0, got {box}")
        w_out, h_out = (out_size, out_size) if isinstance(out_size, int) else out_size
        scale = np.diag([w_out / (x1 - x0), h_out / (y1 - y0), 1.0])
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        return Camera(scale @ shift @ self.K, self.R.copy(), self.t.copy(), self.dist.copy(),
                      image_size=(w_out, h_out), name=self.name)

    def undistorted(self) -> Camera:
        """The same camera with its distortion dropped (for undistorted images)."""
        return Camera(self.K.copy(), self.R.copy(), self.t.copy(), np.zeros(5),
                      self.image_size, self.name)

    def to_dict(self) -> dict:
        return {"K": self.K.tolist(), "R": self.R.tolist(), "t": self.t.tolist(),
                "dist": self.dist.tolist(), "image_size": self.image_size, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        size = d.get("image_size")
        return cls(d["K"], d["R"], d["t"], d.get("dist", np.zeros(5)),
                   tuple(size) if size is not None else None, d.get("name", ""))

    @staticmethod
    def _call(fn, *arrays):
        tensors = [None if a is None else torch.as_tensor(np.asarray(a, dtype=np.float64))
                   for a in arrays]
        return fn(*tensors).numpy()


def square_box(points2d: np.ndarray, margin: float = 0.2,
               min_side: float = 1.0) -> tuple[float, float, float, float]:
    """A square box (x0, y0, x1, y1) around pixel points [N, 2], grown by `margin` of its side
    on each side (learnable-triangulation crops a square around the person)."""
    pts = np.asarray(points2d, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all() or len(pts) == 0:
        raise ValueError("square_box needs finite points")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2
    side = max(float((hi - lo).max()) * (1 + 2 * margin), min_side)
    return (centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2,
            centre[1] + side / 2)


def square_about_centre(box: tuple[float, float, float, float]
                        ) -> tuple[float, float, float, float]:
    """The square (x0, y0, x1, y1) with the box's centre and its longer side: training crops
    (and so prediction crops) are square, so a person is never stretched."""
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - half, cy - half, cx + half, cy + half


def rotation_from_quaternion(q) -> np.ndarray:
    """Rotation matrix [3, 3] of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
