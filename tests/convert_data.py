"""Shared by the converter tests: a test pose and reading a converted dataset back."""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from pose3d.data.schema import decode_sample


def standing_pose(shift: float) -> np.ndarray:
    """Our 17 joints [17, 3] world mm (z up), moved along x by `shift`."""
    pose = np.array([
        [0, 0, 900], [-100, 0, 900], [-100, 0, 500], [-100, 0, 100], [100, 0, 900],
        [100, 0, 500], [100, 0, 100], [0, 0, 1100], [0, 0, 1350], [0, 0, 1450],
        [0, 0, 1600], [180, 0, 1350], [200, 0, 1100], [200, 0, 850], [-180, 0, 1350],
        [-200, 0, 1100], [-200, 0, 850]], dtype=np.float64)
    return pose + [shift, 0.3 * shift, 0]


def read_dataset(out: Path) -> dict:
    """Every sample of the converted set, decoded, by key."""
    manifest = json.loads((out / "manifest.json").read_text())
    samples = {}
    for role in manifest["roles"].values():
        for shard in role["shards"]:
            files: dict[str, dict] = defaultdict(dict)
            with tarfile.open(out / shard["file"]) as tar:
                for m in tar.getmembers():
                    key, _, ext = m.name.partition(".")
                    files[key][ext] = tar.extractfile(m).read()
            for key, f in files.items():
                samples[key] = decode_sample({"__key__": key, **f})
    return samples
