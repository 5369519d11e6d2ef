import re

import pytest
import torch
from omegaconf import OmegaConf
from op_memory import allocated_inside
from pose_tuples import make_tuples
from torch import nn
from torchvision import models as tv_models

from pose3d.geometry import HeatmapSpace, project, world_to_heatmap
from pose3d.models import (
    MultiViewTriangulationModel,
    SingleViewModel,
    build_backbone,
    build_model,
)
from pose3d.ops.soft_argmax import soft_argmax_2d_reference

TINY = {"backbone": "resnet18", "deconv_channels": 16, "num_deconv": 2}


def _single(**kw) -> SingleViewModel:
    return SingleViewModel(**(TINY | {"depth_bins": 8} | kw))


def _multi(**kw) -> MultiViewTriangulationModel:
    return MultiViewTriangulationModel(**(TINY | {"confidence_hidden": 16} | kw))


def _spread_heads(model: nn.Module) -> None:
    """Re-initialise the heads with unit-gain weights so that heatmaps are far from flat and
    numerical differences show in the soft-argmax output."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.weight.dim() > 1:
            if not any(m is c for c in model.trunk.modules()):
                nn.init.kaiming_normal_(m.weight)


def test_single_view_shapes_and_heatmap_space():
    model = _single()
    out = model(torch.randn(2, 3, 64, 64), return_heatmaps=True)
    assert out["coords"].shape == (2, 17, 3) and out["coords"].dtype == torch.float32
    assert out["heatmaps"].shape == (2, 17, 8, 8, 8)  # 64 / 32 * 2^2 = 8 pixels a side
    assert model.stride == 8
    space = model.heatmap_space(64)
    assert space == HeatmapSpace(stride=8, depth_bins=8, depth_range_mm=2000)
    assert 64 / space.stride == out["heatmaps"].shape[-1]
    assert ((out["coords"] >= 0) & (out["coords"] <= 7)).all()
    assert "heatmaps" not in model(torch.randn(1, 3, 64, 64))


def test_paper_head_gives_stride_4():
    model = SingleViewModel("resnet18", depth_bins=4, deconv_channels=8, num_deconv=3)
    out = model(torch.randn(1, 3, 64, 96), return_heatmaps=True)
    assert model.stride == 4 and out["heatmaps"].shape == (1, 17, 4, 16, 24)
    assert model.heatmap_space((64, 96)).stride == 4


def _assert_all_parameters_have_gradients(model: nn.Module) -> None:
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing[:5]}"


def test_single_view_gradients_reach_every_parameter(device):
    model = _single().to(device)
    model(torch.randn(2, 3, 64, 64).to(device))["coords"].square().sum().backward()
    _assert_all_parameters_have_gradients(model)


def test_single_view_channels_last_and_bf16_agree(device):
    model = _single().eval()
    _spread_heads(model)
    model.to(device)
    images = torch.randn(2, 3, 64, 64).to(device)
    with torch.no_grad():
        ref = model(images)["coords"]
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        cl = model(images)["coords"]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf = model(images)["coords"]
    assert ref.std() > 0.3  # the outputs differ between joints: the comparison means something
    torch.testing.assert_close(cl, ref, atol=1e-4, rtol=0)
    assert bf.dtype == torch.float32
    assert (bf - ref).abs().max() < 0.25  # voxels


def test_single_view_channels_last_heatmaps_reach_soft_argmax_uncopied():
    # The 1x1 conv writes channels_last maps [N, h, w, J*D]; the op must walk them where they
    # lie (D of unit stride) in the forward and the backward, and hand back a gradient in the
    # same layout, so that no full-size copy of the heatmaps is made in a training step.
    from torch.profiler import ProfilerActivity, profile

    model = _single().to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = model(images, return_heatmaps=True)
        heatmaps = out["heatmaps"]
        grads = []
        heatmaps.register_hook(grads.append)
        out["coords"].square().sum().backward()
    assert heatmaps.stride(2) == 1 and not heatmaps.is_contiguous()
    forward = allocated_inside(prof, "pose3d::soft_argmax_3d_forward")
    backward = allocated_inside(prof, "pose3d::soft_argmax_3d_backward")
    assert forward < heatmaps.nbytes // 8  # coords and stats
    assert backward < heatmaps.nbytes + heatmaps.nbytes // 8  # the gradient
    assert grads[0].stride() == heatmaps.stride()


def _views(batch=2, views=3, size=64, seed=0):
    data = make_tuples(batch, views, size, seed)
    return torch.randn(batch, views, 3, size, size), data


def test_single_view_starts_from_the_multi_view_2d_skill():
    torch.manual_seed(0)
    mv = _multi()
    _spread_heads(mv)
    mv.eval()
    sv = _single(depth_bins=6).eval()
    sv.init_from_multi_view(mv.state_dict())
    images = torch.randn(3, 3, 64, 64)
    joints2d, _ = mv.predict_2d(images)
    coords = sv(images)["coords"]
    assert joints2d.std() > 0.5  # heatmaps far from flat: the check below means something
    torch.testing.assert_close(coords[..., :2], joints2d, atol=1e-4, rtol=1e-4)
    # the same 2D map at every depth: z sits at the centre of the D = 6 bins
    torch.testing.assert_close(coords[..., 2], torch.full_like(coords[..., 2], 2.5))


def test_single_view_from_a_mismatched_multi_view_model_raises():
    sv = _single()
    with pytest.raises(ValueError, match="head.deconvs.0.weight has shape"):
        sv.init_from_multi_view(_multi(deconv_channels=8).state_dict())
    with pytest.raises(ValueError, match="tensors missing"):
        sv.init_from_multi_view({"head.final.weight": torch.zeros(17, 16, 1, 1)})


def test_multi_view_shapes_and_invalid_views():
    model = _multi()
    images, data = _views(2, 3)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    out = model(images, data["K"], data["R"], data["t"], valid)
    assert out["joints3d"].shape == (2, 17, 3) and out["joints2d"].shape == (2, 3, 17, 2)
    assert out["confidences"].shape == (2, 3, 17) and out["valid3d"].shape == (2, 17)
    assert (out["confidences"][~valid] == 0).all() and (out["confidences"][valid] > 0).all()
    assert out["valid3d"][0].all() and not out["valid3d"][1].any()  # tuple 1: one view
    assert ((out["joints2d"] >= 0) & (out["joints2d"] <= 64)).all()  # input pixels


def test_multi_view_gradients_reach_every_parameter(device):
    model = _multi().to(device)
    images, data = _views(2, 3)
    images, data = images.to(device), {k: v.to(device) for k, v in data.items()}
    out = model(images, data["K"], data["R"], data["t"])
    # a 3D term reaches the confidences, a 2D one the heatmap head
    ((out["joints3d"] - data["joints3d"]).abs().mean() + out["joints2d"].square().mean()
     ).backward()
    _assert_all_parameters_have_gradients(model)


def test_multi_view_channels_last_and_bf16_agree(device):
    model = _multi().eval()
    _spread_heads(model)
    model.to(device)
    images, data = _views(2, 3)
    images = images.to(device)
    cams = tuple(data[k].to(device) for k in ("K", "R", "t"))
    with torch.no_grad():
        ref = model(images, *cams)
        model = model.to(memory_format=torch.channels_last)
        cl = model(images, *cams)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf = model(images, *cams)
    assert ref["joints2d"].std() > 2  # pixels
    # On a GPU, cuDNN picks other convolution algorithms (another summation order) for
    # channels_last: the 2D joints moved by up to 1.4e-3 px on an H200 (2026-11-27).
    cuda = device.type == "cuda"
    atol = {"joints2d": 1e-2 if cuda else 1e-3, "confidences": 1e-3,  # px, 1
            "joints3d": 0.5 if cuda else 1e-3}  # mm
    for key in ("joints2d", "confidences", "joints3d"):
        torch.testing.assert_close(cl[key], ref[key], atol=atol[key], rtol=1e-4)
        assert bf[key].dtype == torch.float32 and torch.isfinite(bf[key]).all()
    assert (bf["joints2d"] - ref["joints2d"]).abs().max() < 2  # pixels (stride 8)
    assert (bf["confidences"] - ref["confidences"]).abs().max() < 0.05


def test_multi_view_returns_the_heatmaps_its_2d_joints_come_from():
    model = _multi().eval()
    _spread_heads(model)
    images, data = _views(2, 3)
    cams = tuple(data[k] for k in ("K", "R", "t"))
    with torch.no_grad():
        plain = model(images, *cams)
        out = model(images, *cams, return_heatmaps=True)
    size = 64 / model.stride
    assert out["heatmaps"].shape == (2, 3, 17, size, size) and "heatmaps" not in plain
    from_maps = soft_argmax_2d_reference(out["heatmaps"].flatten(0, 1)) * model.stride
    torch.testing.assert_close(out["joints2d"], from_maps.unflatten(0, (2, 3)), atol=1e-3,
                               rtol=1e-4)
    torch.testing.assert_close(out["joints3d"], plain["joints3d"])


def test_exact_2d_triangulates_to_the_pose_it_came_from():
    """With the 2D stage replaced by exact projections (and garbage in an invalid view), the
    returned 3D pose reprojects onto the 2D joints of every valid view."""
    model = _multi()
    images, data = _views(2, 4)
    K, R, t = data["K"], data["R"], data["t"]
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    pixels = project(data["joints3d"][:, None], K, R, t)  # [B, V, J, 2]
    pixels[~valid] = torch.rand_like(pixels[~valid]) * 64
    confidences = torch.rand(2, 4, 17) * 0.9 + 0.1

    def exact_2d(flat_images, **options):
        return pixels.flatten(0, 1) / model.stride, confidences.flatten(0, 1)

    model.predict_2d = exact_2d
    out = model(images, K, R, t, valid)
    torch.testing.assert_close(out["joints2d"], pixels)
    assert out["valid3d"].all()
    torch.testing.assert_close(out["joints3d"], data["joints3d"], atol=1.0, rtol=0)  # mm
    reproj = project(out["joints3d"][:, None], K, R, t)
    err = (reproj - out["joints2d"]).norm(dim=-1)  # pixels, [B, V, J]
    assert (err[valid] < 0.05).all()


def test_heatmap_convention_matches_world_to_heatmap():
    """Voxel x is pixel x * stride in both models: the single-view space maps the projection
    of a pose to pixels / stride, which is what the multi-view model multiplies back."""
    data = make_tuples(1, 2)
    model = _single()
    space = model.heatmap_space(64)
    coords, _ = world_to_heatmap(data["joints3d"][:, None], data["K"], data["R"], data["t"],
                                 space)
    pixels = project(data["joints3d"][:, None], data["K"], data["R"], data["t"])
    torch.testing.assert_close(coords[..., :2] * _multi().stride, pixels)


@pytest.mark.parametrize("bad,match", [
    (torch.randn(2, 64, 64), r"\[N, 3, H, W\]"),
    (torch.randn(2, 1, 64, 64), r"\[N, 3, H, W\]"),
    (torch.randn(2, 3, 50, 64), "multiples of 32"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "floating point"),
])
def test_single_view_bad_images_raise(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _single()(bad)


def test_multi_view_bad_inputs_raise():
    model = _multi()
    images, data = _views(2, 3)
    K, R, t = data["K"], data["R"], data["t"]
    with pytest.raises(ValueError, match=r"\[B, V, 3, H, W\]"):
        model(images[0], K, R, t)
    with pytest.raises(ValueError, match=r"K must have shape \[2, 3, 3, 3\]"):
        model(images, K[:, :2], R, t)
    with pytest.raises(ValueError, match="t must have shape"):
        model(images, K, R, t[..., :2])
    with pytest.raises(ValueError, match="valid must be a bool tensor"):
        model(images, K, R, t, torch.ones(2, 3))
    with pytest.raises(ValueError, match="image size must be a positive multiple of 32"):
        _single().heatmap_space(100)


def test_backbone_loads_a_torchvision_state_dict(tmp_path):
    net = tv_models.resnet18(weights=None)  # full classifier, fc included, as ImageNet files
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    trunk = build_backbone("resnet18", path)
    torch.testing.assert_close(trunk.layer3[1].conv2.weight, net.layer3[1].conv2.weight)
    model = _single(weights_path=path)
    torch.testing.assert_close(model.trunk.conv1.weight, net.conv1.weight)


@pytest.mark.parametrize("saved,wanted,match", [
    ("resnet18", "resnet34", "0 tensors of the wrong shape, 96 missing"),
    ("resnet18", "resnet50", "tensors of the wrong shape"),
])
def test_backbone_weights_of_another_architecture_are_a_one_line_error(
        tmp_path, saved, wanted, match):
    path = tmp_path / f"{saved}.pth"
    torch.save(getattr(tv_models, saved)(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=f"does not fit a {wanted} trunk") as info:
        build_backbone(wanted, path)
    assert match in str(info.value) and "\n" not in str(info.value)


def test_resnet10_is_resnet18_with_one_block_per_stage():
    small, full = build_backbone("resnet10"), build_backbone("resnet18")
    images = torch.randn(1, 3, 64, 64)
    assert small(images).shape == full(images).shape == (1, 512, 2, 2)
    # torchvision's names and shapes, each stage's first block only
    assert {k: v.shape for k, v in small.state_dict().items()} == {
        k: v.shape for k, v in full.state_dict().items() if not re.match(r"layer\d\.1\.", k)}
    with pytest.raises(ValueError, match="no published ImageNet weights for resnet10"):
        build_backbone("resnet10", "imagenet")


def test_backbone_missing_or_foreign_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone weights file not found"):
        build_backbone("resnet18", tmp_path / "nope.pth")
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="holds no state dict"):
        build_backbone("resnet18", path)
    with pytest.raises(ValueError, match="unknown backbone 'resnet99'"):
        build_backbone("resnet99")


def test_build_model_from_dict_and_omegaconf():
    model = build_model({"kind": "single_view", **TINY, "depth_bins": 4})
    assert isinstance(model, SingleViewModel) and model.depth_bins == 4
    cfg = OmegaConf.create({"kind": "multi_view", **TINY})
    assert isinstance(build_model(cfg), MultiViewTriangulationModel)
    with pytest.raises(ValueError, match="unknown single_view model option.*dpeth_bins"):
        build_model({"kind": "single_view", "dpeth_bins": 4})
    with pytest.raises(ValueError, match="needs kind"):
        build_model({"backbone": "resnet18"})
