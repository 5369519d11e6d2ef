import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _mocap_dir() -> Path | None:
    for candidate in (os.environ.get("POSE3D_MOCAP_DIR"), REPO.parent / "shared" / "mocap"):
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("*.bvh")):
            return Path(candidate)
    return None


@pytest.fixture
def mocap_dir() -> Path:
    """The folder of real CMU BVH clips; tests using it skip where it is absent."""
    path = _mocap_dir()
    if path is None:
        pytest.skip("no mocap folder (../shared/mocap or POSE3D_MOCAP_DIR)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
