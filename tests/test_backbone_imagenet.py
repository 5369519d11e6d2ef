"""`backbone_weights: imagenet`: torchvision's published ImageNet weights through the torch hub
cache, tested with a file placed in a temporary cache (TORCH_HOME) and no network."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision import models

from pose3d.models.backbone import build_backbone, imagenet_weights_file
from pose3d.train.config import load_config
from pose3d.train.stages import MultiViewPretrain, SingleViewPretrain

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty hub cache under tmp_path, and every download fails as offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_weights_come_from_the_hub_cache(no_network):
    torch.manual_seed(3)
    reference = models.resnet18().state_dict()  # stands in for the published file, with fc.*
    no_network.mkdir(parents=True)
    path = no_network / "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 file name
    small = {k: v.half() if v.is_floating_point() else v for k, v in reference.items()}
    torch.save(small, path)  # half precision: a smaller file
    assert imagenet_weights_file("resnet18") == path
    trunk = build_backbone("resnet18", "imagenet")
    for name, value in trunk.state_dict().items():
        torch.testing.assert_close(value, small[name].to(value.dtype), msg=name)


def test_without_network_or_file_the_error_names_the_file_and_the_folder(no_network):
    with pytest.raises(FileNotFoundError) as info:
        build_backbone("resnet50", "imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "resnet50-0676ba61.pth" in message and str(no_network) in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message


def test_a_local_file_still_works(tmp_path):
    torch.manual_seed(4)
    reference = models.resnet18().state_dict()
    torch.save(reference, tmp_path / "w.pth")
    trunk = build_backbone("resnet18", tmp_path / "w.pth")
    torch.testing.assert_close(trunk.layer1[0].conv1.weight, reference["layer1.0.conv1.weight"])


@pytest.mark.parametrize("config", ["h36m.yaml", "h36m_s1.yaml", "mpi_inf_3dhp.yaml"])
def test_paper_configs_start_from_imagenet(config, no_network):
    cfg = load_config(REPO / "launch" / "configs" / config)
    assert cfg.model.sv.backbone_weights == cfg.model.mv.backbone_weights == "imagenet"
    tiny = ["model.sv.backbone=resnet18", "model.mv.backbone=resnet18"]
    cfg = load_config(REPO / "launch" / "configs" / config, tiny)
    for stage in (SingleViewPretrain(), MultiViewPretrain()):  # the stages ask for the hub file
        with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
            stage.build_model(cfg)
