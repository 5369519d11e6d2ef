import itertools

import pytest
import torch
from pose_tuples import make_tuples

from pose3d.geometry import HeatmapSpace, heatmap_to_world, project, world_to_heatmap
from pose3d.losses import (
    heatmap_targets,
    multiview_consistency_loss,
    mv_pretrain_loss,
    pose_loss,
    pose_targets,
    prediction_to_world,
    total_loss,
)
from pose3d.models import MultiViewTriangulationModel

SPACE = HeatmapSpace(stride=4, depth_bins=16, depth_range_mm=2000)


def _consistent(batch=2, views=4, dtype=torch.float64, seed=0, device="cpu"):
    """A batch whose every view predicts exactly the projection of one world pose."""
    data = {k: v.to(device) for k, v in make_tuples(batch, views, 64, seed, dtype).items()}
    coords, root_depth = heatmap_targets(data["joints3d"], data["K"], data["R"], data["t"],
                                         SPACE)
    return data, coords, root_depth


def _mv(coords, root_depth, data, valid):
    return multiview_consistency_loss(coords, root_depth, data["K"], data["R"], data["t"],
                                      valid, SPACE)


def _eq9_by_loops(coords, root_depth, data, valid):
    """Eq. 9 written out literally, tuple by tuple and pair by pair."""
    world = heatmap_to_world(coords, root_depth, data["K"], data["R"], data["t"], SPACE)
    per_tuple = []
    for b in range(coords.shape[0]):
        views = [c for c in range(coords.shape[1]) if valid[b, c]]
        if len(views) < 2:
            continue
        total = sum((world[b, c] - world[b, d]).abs().sum()
                    for c, d in itertools.permutations(views, 2))
        per_tuple.append(total / (len(views) * (len(views) - 1)))
    return torch.stack(per_tuple).mean()


# ---- L_pose


def test_pose_loss_is_mean_l1_per_coordinate():
    pred, target = torch.randn(3, 17, 3), torch.randn(3, 17, 3)
    assert pose_loss(pred, target) == pytest.approx((pred - target).abs().mean().item())
    weight = torch.tensor([1.0, 0.0, 3.0])
    expected = ((pred - target).abs().mean(dim=(1, 2)) * weight).sum() / weight.sum()
    assert pose_loss(pred, target, weight) == pytest.approx(expected.item(), rel=1e-5)


def test_pose_loss_masks_unlabeled_samples():
    pred = torch.randn(4, 2, 17, 3, requires_grad=True)  # [B, V, J, 3]
    target = torch.randn(4, 2, 17, 3)
    labeled = torch.tensor([True, False, True, False])
    target[~labeled] = float("nan")  # no target at all there
    mask = labeled[:, None].expand(4, 2)
    loss = pose_loss(pred, target, mask)
    assert loss.item() == pytest.approx((pred - target)[labeled].abs().mean().item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~labeled] == 0).all() and (pred.grad[labeled] != 0).all()


def test_pose_loss_per_joint_mask_and_empty_mask():
    pred = torch.randn(2, 17, 3, requires_grad=True)
    target = pred.detach() + 1.0
    target[:, 5] += 10.0
    joint_mask = torch.ones(2, 17, dtype=torch.bool)
    joint_mask[:, 5] = False
    assert pose_loss(pred, target, joint_mask).item() == pytest.approx(1.0)
    empty = pose_loss(pred, target, torch.zeros(2, dtype=torch.bool))
    empty.backward()
    assert empty == 0 and (pred.grad == 0).all()


def test_pose_loss_bad_shapes_raise():
    with pytest.raises(ValueError, match="same shape"):
        pose_loss(torch.zeros(2, 17, 3), torch.zeros(2, 16, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., J, 3\]"):
        pose_loss(torch.zeros(2, 17, 2), torch.zeros(2, 17, 2))
    with pytest.raises(ValueError, match=r"weight must have shape \[2\] .* or \[2, 17\]"):
        pose_loss(torch.zeros(2, 17, 3), torch.zeros(2, 17, 3), torch.ones(3))


# ---- targets


def test_heatmap_targets_normalise_into_every_view():
    data = make_tuples(2, 3, 64)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    coords, root_depth = heatmap_targets(data["joints3d"], data["K"], data["R"], data["t"],
                                         SPACE, valid)
    assert coords.shape == (2, 3, 17, 3) and root_depth.shape == (2, 3)
    ref, ref_depth = world_to_heatmap(data["joints3d"], data["K"][:, 1], data["R"][:, 1],
                                      data["t"][:, 1], SPACE)
    torch.testing.assert_close(coords[:, 1], ref)
    torch.testing.assert_close(root_depth[:, 1], ref_depth)
    assert (coords[0, 2] == 0).all() and root_depth[0, 2] == 0
    # cropped views: the pose lies inside the 16 x 16 heatmap, its root at mid-depth
    assert (coords[valid][..., :2] > 0).all() and (coords[valid][..., :2] < 16).all()
    torch.testing.assert_close(coords[valid][:, 0, 2], torch.full((5,), 8.0))


def test_pose_targets_prefer_gt_then_pgt():
    gt, pgt = torch.randn(3, 17, 3), torch.randn(3, 17, 3)
    target, has = pose_targets(gt, torch.tensor([True, False, False]), pgt,
                               torch.tensor([True, True, False]))
    torch.testing.assert_close(target[0], gt[0])
    torch.testing.assert_close(target[1], pgt[1])
    assert has.tolist() == [True, True, False]


# ---- L_mv (eq. 9)


def test_mv_loss_is_zero_when_all_views_agree():
    data, coords, root_depth = _consistent()
    valid = torch.ones(2, 4, dtype=torch.bool)
    assert _mv(coords, root_depth, data, valid) < 1e-6  # mm
    data32, coords32, depth32 = _consistent(dtype=torch.float32)
    assert _mv(coords32, depth32, data32, valid) < 0.5  # mm, summed over 51 coordinates


def test_mv_loss_is_eq9_literally(device):
    data, coords, root_depth = _consistent(3, 4, device=device)
    coords = coords + torch.randn(coords.shape, dtype=coords.dtype).to(device) * 0.5
    valid = torch.tensor([[True, True, True, True], [True, False, True, False],
                          [False, False, True, False]], device=device)
    loss = _mv(coords, root_depth, data, valid)
    torch.testing.assert_close(loss, _eq9_by_loops(coords, root_depth, data, valid))
    assert loss > 10  # half a voxel of noise is tens of millimetres


def test_mv_loss_ignores_view_order():
    data, coords, root_depth = _consistent(2, 4)
    coords = coords + torch.randn_like(coords)
    valid = torch.tensor([[True, True, False, True], [True, True, True, True]])
    perm = torch.tensor([2, 0, 3, 1])
    permuted = {k: (v[:, perm] if k != "joints3d" else v) for k, v in data.items()}
    a = _mv(coords, root_depth, data, valid)
    b = _mv(coords[:, perm], root_depth[:, perm], permuted, valid[:, perm])
    torch.testing.assert_close(a, b)


def test_mv_loss_decreases_under_gradient_descent():
    data, coords, root_depth = _consistent(2, 3, dtype=torch.float32)
    pred = (coords + torch.randn_like(coords)).requires_grad_(True)
    valid = torch.ones(2, 3, dtype=torch.bool)
    opt = torch.optim.Adam([pred], lr=0.05)
    losses = []
    for _ in range(30):
        loss = _mv(pred, root_depth, data, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0 and losses[-1] < 0.5 * losses[0]


def test_mv_loss_without_pairs_is_zero_and_nan_free():
    data, coords, root_depth = _consistent(2, 3, dtype=torch.float32)
    pred = (coords + torch.randn_like(coords)).requires_grad_(True)
    K = data["K"].clone()
    K[:, 2] = 0  # padding views: zero cameras must not leak NaN
    data = dict(data, K=K)
    one_view = torch.tensor([[True, False, False], [False, True, False]])
    loss = _mv(pred, root_depth, data, one_view)
    loss.backward()
    assert loss == 0 and torch.isfinite(pred.grad).all() and (pred.grad == 0).all()
    # a tuple with a single valid view adds nothing to the others
    some = torch.tensor([[True, True, False], [True, False, False]])
    pred.grad = None
    loss = _mv(pred, root_depth, data, some)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1] == 0).all()
    one_tuple = {k: v[:1] for k, v in data.items()}
    torch.testing.assert_close(loss, _mv(pred[:1], root_depth[:1], one_tuple, some[:1]))


def test_mv_loss_bad_shapes_raise():
    data, coords, root_depth = _consistent(2, 3)
    valid = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"root_depth must have shape \[2, 3\]"):
        _mv(coords, root_depth[:, :2], data, valid)
    with pytest.raises(ValueError, match=r"pred_coords must have shape \[B, V, J, 3\]"):
        _mv(coords[0], root_depth, data, valid)
    with pytest.raises(ValueError, match="valid must have shape"):
        _mv(coords, root_depth, data, valid[0])


# ---- eq. 10 and the multi-view pretraining loss


def test_total_loss_combines_pose_and_mv(device):
    data, coords, _ = _consistent(3, 3, dtype=torch.float32, device=device)
    pred = (coords + torch.randn(coords.shape).to(device) * 0.3).requires_grad_(True)
    valid = torch.ones(3, 3, dtype=torch.bool, device=device)
    has_target = torch.tensor([True, True, False], device=device)
    target = data["joints3d"].clone()
    target[2] = 0.0  # no GT, no P-GT: zeros as in the batch
    cams = data["K"], data["R"], data["t"]
    loss, parts = total_loss(pred, target, has_target, *cams, valid, SPACE,
                             lambda_pose=2.0, lambda_mv=0.01)
    use = valid & has_target[:, None]
    assert parts["pose"].item() == pytest.approx(pose_loss(pred, coords, use).item(), rel=1e-5)
    assert parts["mv"] > 0
    assert loss.item() == pytest.approx(2.0 * parts["pose"].item() + 0.01 * parts["mv"].item(),
                                        rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[2] == 0).all()
    l1_only, parts = total_loss(pred, target, has_target, *cams, valid, SPACE, lambda_mv=0.0)
    assert l1_only == parts["pose"] and parts["mv"] > 0  # still logged


def test_mv_pretrain_loss_is_zero_at_the_truth_and_nan_free():
    data = make_tuples(2, 3, 64)
    cams = data["K"], data["R"], data["t"]
    valid = torch.tensor([[True, True, True], [True, True, False]])
    joints3d = data["joints3d"].clone().requires_grad_(True)
    out = {"joints3d": joints3d, "joints2d": project(data["joints3d"][:, None], *cams),
           "valid3d": torch.ones(2, 17, dtype=torch.bool)}
    loss, parts = mv_pretrain_loss(out, data["joints3d"], torch.tensor([True, True]), *cams,
                                   valid, lambda_2d=1.0, stride=4)
    assert loss < 1e-3 and parts["3d"] < 1e-4 and parts["2d"] < 1e-3
    # a failed triangulation (NaN, valid3d False) and an unlabeled tuple are left out
    broken = joints3d.detach().clone() + 10.0
    broken[0, 3] = float("nan")
    broken.requires_grad_(True)
    valid3d = torch.ones(2, 17, dtype=torch.bool)
    valid3d[0, 3] = False
    out = dict(out, joints3d=broken, valid3d=valid3d)
    loss, parts = mv_pretrain_loss(out, data["joints3d"], torch.tensor([True, False]), *cams,
                                   valid)
    loss.backward()
    assert parts["3d"] == pytest.approx(10.0, rel=1e-4)
    assert torch.isfinite(broken.grad).all() and (broken.grad[1] == 0).all()
    assert (broken.grad[0, 3] == 0).all()


def test_mv_pretrain_loss_trains_the_multi_view_model(device):
    model = MultiViewTriangulationModel("resnet10", deconv_channels=16, num_deconv=2,
                                        confidence_hidden=16).to(device)
    data = {k: v.to(device) for k, v in make_tuples(2, 3, 64).items()}
    cams = data["K"], data["R"], data["t"]
    valid = torch.ones(2, 3, dtype=torch.bool, device=device)
    out = model(torch.randn(2, 3, 3, 64, 64).to(device), *cams, valid)
    loss, parts = mv_pretrain_loss(out, data["joints3d"],
                                   torch.ones(2, dtype=torch.bool, device=device),
                                   *cams, valid, lambda_2d=0.1, stride=model.stride)
    loss.backward()
    assert parts["3d"] > 0 and parts["2d"] > 0
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# ---- the bf16 autocast path (what training runs on the GPU), on the CPU


def test_mv_loss_under_bf16_autocast_stays_float32():
    # bf16 keeps 8 bits of mantissa: a camera-depth of ~5000 mm is then off by up to 16 mm
    # per coordinate, and views that agree exactly would disagree by tens of millimetres.
    data, coords, root_depth = _consistent(2, 4, dtype=torch.float32)
    valid = torch.ones(2, 4, dtype=torch.bool)
    reference = _mv(coords, root_depth, data, valid)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        agree = _mv(coords, root_depth, data, valid)
        # what the network hands over under autocast: bf16 coordinates
        noisy = coords + torch.randn_like(coords) * 0.5
        from_bf16 = _mv(noisy.bfloat16(), root_depth, data, valid)
    assert agree.dtype == torch.float32 and agree < 0.5  # mm, as outside autocast
    torch.testing.assert_close(agree, reference)
    exact = _eq9_by_loops(noisy.bfloat16().double(), root_depth.double(),
                          {k: v.double() for k, v in data.items()}, valid)
    assert from_bf16.dtype == torch.float32
    assert from_bf16.item() == pytest.approx(exact.item(), rel=1e-4)


def test_total_loss_under_bf16_autocast_matches_float32():
    data, coords, _ = _consistent(3, 3, dtype=torch.float32)
    pred = coords + torch.randn_like(coords) * 0.3
    pred_bf16 = pred.bfloat16()  # the network's output under autocast
    valid = torch.ones(3, 3, dtype=torch.bool)
    has_target = torch.ones(3, dtype=torch.bool)
    cams = data["K"], data["R"], data["t"]
    _, ref = total_loss(pred_bf16.float(), data["joints3d"], has_target, *cams, valid, SPACE,
                        lambda_mv=0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = total_loss(pred_bf16.requires_grad_(True), data["joints3d"], has_target,
                                 *cams, valid, SPACE, lambda_mv=0.01)
    loss.backward()
    assert torch.isfinite(pred_bf16.grad.float()).all()
    for name in ("pose", "mv"):
        assert parts[name].item() == pytest.approx(ref[name].item(), rel=1e-3), name
    # the targets are float32 too: a bf16 target would be off by ~0.1 voxel
    assert parts["pose"].item() == pytest.approx(
        pose_loss(pred_bf16.float(), heatmap_targets(data["joints3d"], *cams, SPACE)[0]).item(),
        rel=1e-3)


def test_mv_pretrain_loss_under_bf16_autocast_is_zero_at_the_truth():
    data = make_tuples(2, 3, 64)
    cams = data["K"], data["R"], data["t"]
    valid = torch.ones(2, 3, dtype=torch.bool)
    out = {"joints3d": data["joints3d"].clone(),
           "joints2d": project(data["joints3d"][:, None], *cams),
           "valid3d": torch.ones(2, 17, dtype=torch.bool)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = mv_pretrain_loss(out, data["joints3d"], torch.tensor([True, True]),
                                       *cams, valid, lambda_2d=1.0, stride=4)
    assert parts["3d"] < 1e-4 and parts["2d"] < 1e-3 and loss < 1e-3


def test_prediction_at_the_targets_own_voxels_goes_back_to_the_target_in_world():
    data = make_tuples(2, 4, 64, 3, torch.float32)
    valid = torch.tensor([[True, True, False, True], [True, True, True, True]])
    coords, _ = heatmap_targets(data["joints3d"], data["K"], data["R"], data["t"], SPACE, valid)
    world, root_depth = prediction_to_world(coords, data["joints3d"], data["K"], data["R"],
                                            data["t"], SPACE, valid)
    assert world.shape == (2, 4, 17, 3) and (root_depth[valid] > 0).all()
    assert (root_depth[~valid] == 0).all()
    expected = data["joints3d"][:, None].expand_as(world)
    torch.testing.assert_close(world[valid], expected[valid], atol=0.5, rtol=1e-4)
