"""The P-GT labelling options: test-time flip (pose3d.geometry.flip, the multi-view model's
`joints_2d`), sharpened reading of the heatmaps (`joints_2d`) and outlier rejection
(pose3d.geometry.robust_triangulation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose3d.geometry import h36m_cameras
from pose3d.geometry.flip import unflip_joint_values, unflip_points2d
from pose3d.geometry.robust_triangulation import reprojection_error, triangulate_rejecting
from pose3d.models.multi_view import MultiViewTriangulationModel
from pose3d.ops.soft_argmax import soft_argmax_2d
from pose3d.ops.triangulate import triangulate
from pose3d.skeleton import FLIP_PERMUTATION, LEFT_RIGHT_PAIRS, NUM_JOINTS

W = 24


def _mirror_of(j: int) -> int:
    """The joint's mirror image, from the (left, right) pairs rather than the permutation."""
    for left, right in LEFT_RIGHT_PAIRS:
        if j in (left, right):
            return right if j == left else left
    return j


def test_a_bright_pixel_comes_back_to_its_column():
    image = torch.zeros(W, W)
    image[5, 3] = 1.0  # row 5, column 3: the pixel centred at u = 3
    flipped = image.flip(-1)
    row, col = divmod(int(flipped.argmax()), W)
    found = torch.tensor([[float(col), float(row)]]).expand(NUM_JOINTS, 2)
    assert unflip_points2d(found, W)[0].tolist() == [3.0, 5.0]


def test_heatmaps_of_the_mirrored_image_map_back_exactly():
    """An ideal detector on the mirrored image: its joint j is the original's mirror joint,
    found at the mirrored heatmap location."""
    g = torch.Generator().manual_seed(0)
    peaks = torch.randint(0, W, (NUM_JOINTS, 2), generator=g)
    heat = torch.full((1, NUM_JOINTS, W, W), -1e4)
    heat[0, torch.arange(NUM_JOINTS), peaks[:, 1], peaks[:, 0]] = 0.0
    mirrored = heat.flip(-1)[:, [_mirror_of(j) for j in range(NUM_JOINTS)]]
    back = unflip_points2d(soft_argmax_2d(mirrored), W)
    torch.testing.assert_close(back, peaks[None].float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(back, soft_argmax_2d(heat), atol=1e-4, rtol=0)


def test_joint_values_follow_the_sides():
    values = torch.arange(NUM_JOINTS, dtype=torch.float32)
    assert unflip_joint_values(values).tolist() == [float(_mirror_of(j))
                                                    for j in range(NUM_JOINTS)]
    with pytest.raises(ValueError, match="values must be"):
        unflip_joint_values(torch.zeros(3))


def test_flip_test_averages_both_readings():
    """With a stand-in 2D head that reads the same heatmap coordinates from any image, the
    flip-test joints are the mean of those and their mirror, joints swapped."""
    model = MultiViewTriangulationModel("resnet10", deconv_channels=8, num_deconv=2,
                                        confidence_hidden=8).eval()
    g = torch.Generator().manual_seed(1)
    coords = torch.rand(1, NUM_JOINTS, 2, generator=g) * 8
    conf = torch.rand(1, NUM_JOINTS, generator=g)
    model.predict_2d = lambda images, **options: (coords.expand(len(images), -1, -1),
                                       conf.expand(len(images), -1))
    images = torch.zeros(1, 3, 32, 32)
    joints, confidences = model.joints_2d(images, flip_test=True)
    s = model.stride
    for j in range(NUM_JOINTS):
        m = _mirror_of(j)
        u = (coords[0, j, 0] * s + (32 - 1 - coords[0, m, 0] * s)) / 2
        v = (coords[0, j, 1] + coords[0, m, 1]) * s / 2
        torch.testing.assert_close(joints[0, j], torch.stack([u, v]))
        torch.testing.assert_close(confidences[0, j], (conf[0, j] + conf[0, m]) / 2)
    plain, _ = model.joints_2d(images)
    torch.testing.assert_close(plain, coords * s)


def test_sharpen_reads_the_joints_from_scaled_logits():
    """sharpen s: the 2D joints are the soft-argmax of s x the heatmaps the model returns
    (which stay its own logits); s = 1 is the plain reading. On a peak with a broad far
    tail, sharpening moves the reading towards the peak."""
    model = MultiViewTriangulationModel("resnet10", deconv_channels=8, num_deconv=2,
                                        confidence_hidden=8).eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain, conf, maps = model.joints_2d(images, return_heatmaps=True)
        sharp, conf2, maps2 = model.joints_2d(images, return_heatmaps=True, sharpen=2.0)
        only = model.joints_2d(images, sharpen=2.0)
    torch.testing.assert_close(maps2, maps)
    torch.testing.assert_close(conf2, conf)
    torch.testing.assert_close(sharp, soft_argmax_2d(maps * 2.0) * model.stride)
    torch.testing.assert_close(plain, soft_argmax_2d(maps) * model.stride)
    assert len(only) == 2
    torch.testing.assert_close(only[0], sharp)

    heat = torch.full((1, 1, W, W), -3.0)  # a tail over the whole map ...
    heat[0, 0, 4, 5] = 3.0  # ... and a peak at x=5, y=4, far from the centre
    error = [float((soft_argmax_2d(heat * s)[0, 0] - torch.tensor([5.0, 4.0])).norm())
             for s in (1.0, 2.0)]
    assert error[1] < error[0] / 10


def _rig(batch: int = 3):
    """Exact projections of random poses through the four Human3.6M cameras (float64)."""
    g = torch.Generator().manual_seed(2)
    P = torch.tensor(np.stack([c.P for c in h36m_cameras("S1")]))
    truth = torch.tensor([-600.0, -600.0, 0.0]) + torch.rand(
        batch, NUM_JOINTS, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [1200.0, 1200.0, 1800.0])
    proj = P.expand(batch, 4, 3, 4).contiguous()
    homog = torch.cat([truth, torch.ones_like(truth[..., :1])], -1)
    image = torch.einsum("bvik,bjk->bvji", proj, homog)
    return image[..., :2] / image[..., 2:], proj, truth


def test_reprojection_error_is_the_pixel_distance():
    points2d, proj, truth = _rig()
    assert reprojection_error(truth, proj, points2d).abs().max() < 1e-6
    shifted = points2d + torch.tensor([3.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(reprojection_error(truth, proj, shifted),
                               torch.full(points2d.shape[:-1], 5.0, dtype=torch.float64))


def test_one_corrupted_view_is_left_out():
    points2d, proj, truth = _rig()
    corrupt = points2d.clone()
    corrupt[:, 2, :] += torch.tensor([60.0, -45.0], dtype=torch.float64)  # view 2 is wrong
    conf = torch.ones(points2d.shape[:-1], dtype=torch.float64)
    plain = triangulate(corrupt, proj, conf)
    assert (plain - truth).norm(dim=-1).min() > 5.0  # mm: the outlier pulls every joint
    robust, valid, used = triangulate_rejecting(corrupt, proj, conf, reject_px=10.0)
    torch.testing.assert_close(robust, truth, atol=1e-3, rtol=0)
    assert valid.all()
    assert (used[:, 2] == 0).all() and (used[:, [0, 1, 3]] == 1).all()


def test_without_outliers_it_is_the_plain_triangulation():
    points2d, proj, _ = _rig()
    g = torch.Generator().manual_seed(3)
    noisy = points2d + torch.randn(points2d.shape, generator=g, dtype=torch.float64)  # 1 px
    conf = torch.rand(points2d.shape[:-1], generator=g, dtype=torch.float64) + 0.1
    plain = triangulate(noisy, proj, conf)
    for reject_px in (0.0, 10.0):
        robust, valid, used = triangulate_rejecting(noisy, proj, conf, reject_px=reject_px)
        torch.testing.assert_close(robust, plain, atol=0, rtol=0)
        assert valid.all() and torch.equal(used, conf)


def test_two_views_are_never_reduced():
    points2d, proj, truth = _rig()
    conf = torch.ones(points2d.shape[:-1], dtype=torch.float64)
    conf[:, 2:] = 0  # only views 0 and 1
    corrupt = points2d.clone()
    corrupt[:, 1] += 80.0
    plain = triangulate(corrupt, proj, conf)
    robust, valid, used = triangulate_rejecting(corrupt, proj, conf, reject_px=1.0)
    torch.testing.assert_close(robust, plain, atol=0, rtol=0)
    assert torch.equal(used, conf)
    with pytest.raises(ValueError, match="min_views"):
        triangulate_rejecting(corrupt, proj, conf, reject_px=1.0, min_views=1)


def test_flip_permutation_agrees_with_the_pairs():
    assert list(FLIP_PERMUTATION) == [_mirror_of(j) for j in range(NUM_JOINTS)]
