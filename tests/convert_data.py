"""Shared by the converter tests: a test pose and reading a converted dataset back."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from pose3d.data import schema
from pose3d.data.loader import iterate_samples


def standing_pose(shift: float) -> np.ndarray:
    """Our 17 joints [17, 3] world mm (z up), moved along x by `shift`."""
    pose = np.array([
        [0, 0, 900], [-100, 0, 900], [-100, 0, 500], [-100, 0, 100], [100, 0, 900],
        [100, 0, 500], [100, 0, 100], [0, 0, 1100], [0, 0, 1350], [0, 0, 1450],
        [0, 0, 1600], [180, 0, 1350], [200, 0, 1100], [200, 0, 850], [-180, 0, 1350],
        [-200, 0, 1100], [-200, 0, 850]], dtype=np.float64)
    return pose + [shift, 0.3 * shift, 0]


def read_dataset(out: Path) -> dict:
    """Every sample of the converted set (all roles), decoded, by key; fails on a sample
    the loader would reject."""
    def fail(message: str) -> None:
        raise AssertionError(message)

    return {s.key: s for s in iterate_samples(str(out), on_error=fail)}


def withheld_truth(out: Path) -> dict[str, np.ndarray]:
    """The withheld 3D [17, 3] of every tuple that has one, by key, read from the tars
    (the loader never decodes it)."""
    found = {}
    for shard in sorted(Path(out).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, name = member.name.partition(".")
                if name == schema.WITHHELD_FILE:
                    found[key] = np.load(io.BytesIO(tar.extractfile(member).read()))
    return found
