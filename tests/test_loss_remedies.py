"""Consistency terms that cannot win by shrinking (pose3d.losses.remedies), against eq. 9."""

import itertools

import numpy as np
import pytest
import torch
from pose_tuples import make_tuples

from pose3d.geometry import HeatmapSpace, heatmap_to_world, world_to_heatmap
from pose3d.losses import (
    bone_length_loss,
    heatmap_targets,
    multiview_consistency_loss,
    scale_normalised_consistency_loss,
    total_loss,
)
from pose3d.skeleton import PARENTS
from pose3d.train.config import ConfigError, load_config

SPACE = HeatmapSpace(stride=4, depth_bins=16, depth_range_mm=2000)


def _noisy(batch=3, views=4, dtype=torch.float64, noise=0.5, seed=0):
    data = make_tuples(batch, views, 64, seed, dtype)
    coords, root_depth = heatmap_targets(data["joints3d"], data["K"], data["R"], data["t"],
                                         SPACE)
    gen = torch.Generator().manual_seed(seed)
    coords = coords + noise * torch.randn(coords.shape, generator=gen, dtype=dtype)
    return data, coords, root_depth


def _cams(data):
    return data["K"], data["R"], data["t"]


def _scaled_about_root(coords, root_depth, data, factor):
    """Every view's Π pose multiplied by `factor` about its own root, back in voxels."""
    world = heatmap_to_world(coords, root_depth, *_cams(data), SPACE)
    world = world[..., :1, :] + factor * (world - world[..., :1, :])
    out, depth = world_to_heatmap(world, *_cams(data), SPACE)
    # voxels relative to the root depth Π is given (the predicted root is not at its centre)
    out[..., 2] += ((depth - root_depth) / SPACE.depth_range_mm * SPACE.depth_bins)[..., None]
    torch.testing.assert_close(heatmap_to_world(out, root_depth, *_cams(data), SPACE), world)
    return out


def _losses(coords, root_depth, data, valid):
    args = (coords, root_depth, *_cams(data), valid, SPACE)
    return (multiview_consistency_loss(*args),
            scale_normalised_consistency_loss(*args, data["joints3d"]),
            bone_length_loss(*args, data["joints3d"]))


def test_shrinking_lowers_eq9_but_not_the_remedies():
    data, coords, root_depth = _noisy()
    valid = torch.ones(3, 4, dtype=torch.bool)
    eq9, scale_free, bone = _losses(coords, root_depth, data, valid)
    shrunk = _scaled_about_root(coords, root_depth, data, 0.7)
    eq9_s, scale_free_s, bone_s = _losses(shrunk, root_depth, data, valid)
    assert eq9_s < 0.85 * eq9  # eq. 9 rewards shrinking ...
    torch.testing.assert_close(scale_free_s, scale_free)  # ... this one cannot see it
    assert bone_s > bone + 10  # mm: and this one pays for it


def test_scale_normalised_is_zero_for_views_that_agree_up_to_scale():
    data, coords, root_depth = _noisy(noise=0.0)
    valid = torch.ones(3, 4, dtype=torch.bool)
    factors = torch.tensor([0.5, 1.0, 1.3, 2.0], dtype=torch.float64)[None, :, None, None]
    scaled = _scaled_about_root(coords, root_depth, data, factors)
    eq9, scale_free, _ = _losses(scaled, root_depth, data, valid)
    assert eq9 > 1000 and scale_free < 1e-6  # mm


def test_scale_normalised_is_eq9_on_rescaled_poses_by_loops():
    data, coords, root_depth = _noisy(2, 4)
    valid = torch.tensor([[True, True, False, True], [False, True, True, False]])
    world = heatmap_to_world(coords, root_depth, *_cams(data), SPACE).numpy()
    target = data["joints3d"].numpy()
    expected = []
    for b in range(2):
        size = np.sqrt(((target[b] - target[b, 0]) ** 2).sum())
        rel = {c: world[b, c] - world[b, c, 0] for c in range(4) if valid[b, c]}
        rel = {c: p * size / np.sqrt((p ** 2).sum()) for c, p in rel.items()}
        pairs = list(itertools.permutations(rel, 2))
        expected.append(sum(np.abs(rel[c] - rel[d]).sum() for c, d in pairs) / len(pairs))
    got = scale_normalised_consistency_loss(coords, root_depth, *_cams(data), valid, SPACE,
                                            data["joints3d"])
    assert got.item() == pytest.approx(np.mean(expected), rel=1e-9)


def test_bone_length_loss_is_the_mean_bone_error_and_has_its_minimum_at_the_target():
    data, coords, root_depth = _noisy(noise=0.0)
    valid = torch.tensor([[True] * 4, [True, False, True, False], [False] * 4])
    target = data["joints3d"].numpy()
    lengths = [np.linalg.norm(target[b, j] - target[b, p]) for b in range(2)
               for j, p in enumerate(PARENTS) if p >= 0 for _ in range(4 if b == 0 else 2)]
    for factor in (0.5, 1.0, 1.5):
        scaled = _scaled_about_root(coords, root_depth, data, factor)
        loss = bone_length_loss(scaled, root_depth, *_cams(data), valid, SPACE,
                                data["joints3d"])
        # every valid view's bones are `factor` times the target's
        assert loss.item() == pytest.approx(abs(1 - factor) * np.mean(lengths), abs=1e-3)


def test_remedies_are_nan_free_without_valid_views_and_with_padding_cameras():
    data, coords, root_depth = _noisy(2, 3, dtype=torch.float32)
    pred = coords.clone().requires_grad_(True)
    K = data["K"].clone()
    K[:, 2] = 0  # padding view
    data = dict(data, K=K)
    for valid in (torch.zeros(2, 3, dtype=torch.bool),
                  torch.tensor([[True, True, False], [True, False, False]])):
        pred.grad = None
        _, scale_free, bone = _losses(pred, root_depth, data, valid)
        (scale_free + bone).backward()
        assert torch.isfinite(pred.grad).all()
        assert (pred.grad[:, 2] == 0).all() and (pred.grad[~valid] == 0).all()
        if not valid.any():
            assert scale_free == 0 and bone == 0


def test_total_loss_adds_the_chosen_remedies():
    data, coords, root_depth = _noisy(3, 3, dtype=torch.float32, noise=0.3)
    valid = torch.ones(3, 3, dtype=torch.bool)
    has_target = torch.ones(3, dtype=torch.bool)
    args = (coords, data["joints3d"], has_target, *_cams(data), valid, SPACE)
    plain, parts = total_loss(*args, lambda_mv=0.01)
    loss, parts_sn = total_loss(*args, lambda_mv=0.01, mv_mode="scale_normalised",
                                lambda_bone=0.1)
    _, scale_free, bone = _losses(coords, root_depth, data, valid)
    assert parts_sn["mv"].item() == pytest.approx(scale_free.item(), rel=1e-5)
    assert parts_sn["bone"].item() == pytest.approx(bone.item(), rel=1e-5) and bone > 0
    expected = parts_sn["pose"] + 0.01 * scale_free + 0.1 * bone
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert plain.item() == pytest.approx((parts["pose"] + 0.01 * parts["mv"]).item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown consistency mode 'median'"):
        total_loss(*args, mv_mode="median")


def test_remedies_under_bf16_autocast_on_the_cpu():
    data, coords, _ = _noisy(2, 4, dtype=torch.float32, noise=0.3)
    valid = torch.ones(2, 4, dtype=torch.bool)
    has_target = torch.ones(2, dtype=torch.bool)
    cams = _cams(data)
    kwargs = dict(lambda_mv=0.01, mv_mode="scale_normalised", lambda_bone=0.1)
    rounded = coords.to(torch.bfloat16)
    pred = rounded.clone().requires_grad_(True)  # what a model under autocast returns
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = total_loss(pred, data["joints3d"], has_target, *cams, valid, SPACE,
                                 **kwargs)
    loss.backward()
    # the losses run in float32 outside autocast: the same as float32 on the rounded input
    ref, ref_parts = total_loss(rounded.float(), data["joints3d"], has_target, *cams, valid,
                                SPACE, **kwargs)
    assert loss.dtype == torch.float32 and pred.grad.dtype == torch.bfloat16
    assert torch.isfinite(pred.grad.float()).all() and pred.grad.float().abs().sum() > 0
    for key in ("pose", "mv", "bone", "loss"):
        assert parts[key].item() == pytest.approx(ref_parts[key].item(), rel=1e-4)


def test_config_names_the_bad_remedy_setting():
    cfg = load_config(None, ["loss.mv_mode=scale_normalised", "loss.lambda_bone=0.01"])
    assert cfg.loss.mv_mode == "scale_normalised" and cfg.loss.lambda_bone == 0.01
    with pytest.raises(ConfigError, match="loss.mv_mode must be one of pairwise, "
                                          "scale_normalised, got 'shrink'"):
        load_config(None, ["loss.mv_mode=shrink"])
    with pytest.raises(ConfigError, match="loss.lambda_bone must be >= 0"):
        load_config(None, ["loss.lambda_bone=-1"])
