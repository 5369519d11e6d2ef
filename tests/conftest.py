import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pose3d.threads import apply_threads

REPO = Path(__file__).resolve().parents[1]


def _mocap_dir() -> Path | None:
    for candidate in (os.environ.get("POSE3D_MOCAP_DIR"), REPO.parent / "shared" / "mocap"):
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("*.bvh")):
            return Path(candidate)
    return None


def pytest_configure(config):
    # under xdist each worker takes its share of the cores (PYTEST_XDIST_WORKER_COUNT), so
    # that `-n 2` on 2 cores runs a thread per worker instead of two OpenMP pools of two,
    # each waiting for a core the other holds; OMP_NUM_THREADS, when set, wins
    apply_threads()


@pytest.fixture
def mocap_dir() -> Path:
    """The folder of real CMU BVH clips; tests using it skip where it is absent."""
    path = _mocap_dir()
    if path is None:
        pytest.skip("no mocap folder (../shared/mocap or POSE3D_MOCAP_DIR)")
    return path


@pytest.fixture
def device() -> Iterator[torch.device]:
    """Where a test that takes this fixture runs: POSE3D_TEST_DEVICE (default cpu).

    Such tests carry the `on_device` marker (added at collection); the GPU run
    (scripts/gpu_run.py) runs them with POSE3D_TEST_DEVICE=cuda. There float32 means float32:
    TF32 convolutions and matmuls are off for the test, so tolerances hold on both devices.
    """
    dev = torch.device(os.environ.get("POSE3D_TEST_DEVICE", "cpu"))
    if dev.type != "cuda":
        yield dev
        return
    if not torch.cuda.is_available():
        pytest.skip("POSE3D_TEST_DEVICE=cuda but no CUDA device")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield dev
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.on_device)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch) -> Iterator[Path]:
    """A folder no one may write in. Root may write anywhere, so for root os.access is made
    to say what the mode bits say."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access",
                            lambda p, mode: False if str(p) == str(locked) else real(p, mode))
    yield locked
    locked.chmod(0o700)
