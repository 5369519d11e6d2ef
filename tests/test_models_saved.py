"""pose3d.models.load_model: one call rebuilds a checkpoint's model from the file alone."""

from __future__ import annotations

import pytest
import torch

from pose3d.models import CheckpointError, build_model, load_model
from pose3d.models.saved import fingerprint

SV_ARCH = {"kind": "single_view", "backbone": "resnet10", "deconv_channels": 16,
           "num_deconv": 3, "depth_bins": 8, "depth_range_mm": 2000.0}
MV_ARCH = {"kind": "multi_view", "backbone": "resnet10", "deconv_channels": 16, "num_deconv": 3}


def _save(tmp_path, arch: dict, name: str = "ckpt.pt") -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = build_model(arch)
    path = tmp_path / name
    torch.save({"model": model.state_dict(), "fingerprint": fingerprint(model, arch),
                "config": "run:\n  seed: 3\n", "step": 7}, path)
    return model, str(path)


@pytest.mark.parametrize("arch", [SV_ARCH, MV_ARCH], ids=["single_view", "multi_view"])
def test_load_model_rebuilds_the_same_weights_and_outputs(tmp_path, arch):
    original, path = _save(tmp_path, arch)
    saved = load_model(path, kind=arch["kind"])
    assert saved.kind == arch["kind"] and saved.arch == arch and not saved.model.training
    assert saved.config == {"run": {"seed": 3}} and saved.checkpoint["step"] == 7
    for (k, a), b in zip(original.state_dict().items(), saved.model.state_dict().values()):
        assert torch.equal(a, b), k
    if arch["kind"] == "single_view":
        x = torch.rand(2, 3, 64, 64)
        original.eval()
        torch.testing.assert_close(saved.model(x)["coords"], original(x)["coords"])


def test_load_model_of_the_wrong_kind_names_what_the_file_holds(tmp_path):
    _, path = _save(tmp_path, MV_ARCH)
    with pytest.raises(CheckpointError, match="holds a multi_view model.*not a single_view"):
        load_model(path, kind="single_view")


def test_load_model_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(tmp_path / "garbage.pt")
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no architecture"):
        load_model(tmp_path / "bare.pt")
    model, path = _save(tmp_path, SV_ARCH)
    ckpt = torch.load(path, weights_only=False)
    ckpt["fingerprint"]["shapes"] = "0" * 16
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="this run builds"):
        load_model(tmp_path / "tampered.pt")
