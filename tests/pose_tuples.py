"""Synthetic multi-view tuples for model and loss tests: random bodies seen by the
Human3.6M rig, each view cropped around the body and resized (as the studio does)."""

from __future__ import annotations

import numpy as np
import torch

from pose3d.geometry import h36m_cameras, square_box


def make_tuples(batch: int, views: int, image_size: int = 64, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """joints3d [B, 17, 3] world mm and cropped cameras K [B, V, 3, 3], R, t [B, V, 3]."""
    rng = np.random.default_rng(seed)
    rig = [c.undistorted() for c in h36m_cameras("S1")]
    poses, Ks, Rs, ts = [], [], [], []
    for _ in range(batch):
        pose = rng.uniform([-400, -400, 0], [400, 400, 1800], size=(17, 3))
        crops = [cam.crop_and_resize(square_box(cam.project(pose)), image_size)
                 for cam in (rig[i % len(rig)] for i in range(views))]
        poses.append(pose)
        Ks.append([c.K for c in crops])
        Rs.append([c.R for c in crops])
        ts.append([c.t for c in crops])
    return {name: torch.tensor(np.array(x), dtype=dtype)
            for name, x in (("joints3d", poses), ("K", Ks), ("R", Rs), ("t", ts))}
