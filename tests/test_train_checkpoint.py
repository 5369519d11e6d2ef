import os

import pytest
import torch
from torch import nn

from pose3d.train import checkpoint
from pose3d.train.checkpoint import CheckpointError


def _state(model: nn.Module, step: int, arch: dict) -> dict:
    return {"model": model.state_dict(), "step": step,
            "fingerprint": checkpoint.fingerprint(model, arch)}


def test_save_points_latest_and_keeps_the_last_k(tmp_path):
    model = nn.Linear(3, 2)
    (tmp_path / ".step_00000001.pt.tmp-999999").write_bytes(b"half a checkpoint")  # a crash
    for step in (2, 4, 6, 8):
        checkpoint.save(_state(model, step, {"a": 1}), tmp_path, step, keep=2)
    names = [p.name for p in checkpoint.step_checkpoints(tmp_path)]
    assert names == ["step_00000006.pt", "step_00000008.pt"]
    assert os.readlink(tmp_path / "latest.pt") == "step_00000008.pt"
    assert checkpoint.find_latest(tmp_path).name == "step_00000008.pt"
    assert checkpoint.load(tmp_path / "latest.pt")["step"] == 8
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temporaries left


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.pt"
    checkpoint.atomic_save({"model": {}, "v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        checkpoint.atomic_save({"model": {}, "v": Unpicklable()}, path)
    assert checkpoint.load(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_checkpoint_of_another_model_is_a_one_line_error(tmp_path):
    small, other = nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2))
    checkpoint.save(_state(small, 1, {"backbone": "resnet18"}), tmp_path, 1)
    path = tmp_path / "latest.pt"
    for model, arch in ((other, {"backbone": "resnet18"}), (nn.Linear(3, 2),
                                                             {"backbone": "resnet50"}),
                        (nn.Linear(4, 2), {"backbone": "resnet18"})):
        with pytest.raises(CheckpointError) as exc:
            checkpoint.load_model_weights(model, path, checkpoint.fingerprint(model, arch))
        assert "\n" not in str(exc.value) and "this run builds" in str(exc.value)
    target = nn.Linear(3, 2)
    checkpoint.load_model_weights(target, path, checkpoint.fingerprint(target,
                                                                      {"backbone": "resnet18"}))
    assert torch.equal(target.weight, small.weight)


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        checkpoint.load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a pose3d checkpoint"):
        checkpoint.load(tmp_path / "foreign.pt")


def test_unwrap_sees_through_ddp_and_compile_wrappers():
    inner = nn.Linear(2, 2)

    class Wrapper(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.module = m

    assert checkpoint.unwrap(Wrapper(inner)) is inner
    assert checkpoint.unwrap(inner) is inner
