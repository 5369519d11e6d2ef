"""A PNG grid of stored tuples (rows) and their views (columns), with the stored 3D pose
projected through the stored cameras drawn on top: a visual check that images, cameras
and labels agree."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import cv2
import numpy as np

from pose3d.data import schema
from pose3d.data.draw import BRIGHT_SIDE_RGB, draw_skeleton
from pose3d.data.loader import iterate_samples


def _project(sample: schema.DecodedSample, view: int, points: np.ndarray) -> np.ndarray:
    cam = sample.cameras()[view]
    return cam.project(points)


def preview_grid(samples: Sequence[schema.DecodedSample], cell: int = 192) -> np.ndarray:
    """RGB uint8 grid [rows * cell, views * cell, 3]; invalid views are grey, poses come
    from joints3d (else pgt) when the sample has one."""
    if not samples:
        raise ValueError("preview_grid needs at least one sample")
    views = max(len(s.valid) for s in samples)
    grid = np.full((len(samples) * cell, views * cell, 3), 64, np.uint8)
    for row, sample in enumerate(samples):
        pose = sample.joints3d if sample.joints3d is not None else sample.pgt
        size = sample.images.shape[1]
        for v in range(len(sample.valid)):
            if not sample.valid[v]:
                continue
            img = np.ascontiguousarray(cv2.resize(sample.images[v], (cell, cell),
                                                  interpolation=cv2.INTER_LINEAR))
            if pose is not None:
                scale = cell / size
                draw_skeleton(img, _project(sample, v, pose) * scale,
                              thickness=max(1, int(round(scale))), palette=BRIGHT_SIDE_RGB,
                              joint_colour=(255, 255, 0))
            grid[row * cell:(row + 1) * cell, v * cell:(v + 1) * cell] = img
        label = f"{sample.key} ({sample.meta.get('role', '?')})"
        cv2.putText(grid, label, (4, row * cell + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return grid


def pick_samples(samples, count: int, look_at: int = 400) -> list[schema.DecodedSample]:
    """Up to `count` samples with a 3D pose, one per subject first, then any, from the
    first `look_at` samples."""
    chosen, seen, rest = [], set(), []
    for sample in itertools.islice(samples, look_at):
        if sample.joints3d is None and sample.pgt is None:
            continue
        subject = sample.meta.get("subject")
        (rest if subject in seen else chosen).append(sample)
        seen.add(subject)
        if len(chosen) >= count:
            break
    return (chosen + rest)[:count]


def write_preview(path: str | os.PathLike, shards, count: int = 4, cell: int = 192) -> str:
    """Write a preview PNG of `count` tuples from `shards` (folder, pattern or list)."""
    samples = pick_samples(iterate_samples(shards), count)
    if not samples:
        raise ValueError(f"no sample with a 3D pose in {shards}")
    grid = preview_grid(samples, cell)
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return os.fspath(path)
