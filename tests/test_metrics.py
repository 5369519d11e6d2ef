import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from pose3d.geometry.metrics import aggregate, auc, evaluate, mpjpe, n_mpjpe, pa_mpjpe, pck3d


def _independent_pa_mpjpe(pred, gt):
    """PA-MPJPE through SciPy's orthogonal Procrustes plus the optimal scale."""
    out = []
    for p, g in zip(pred, gt):
        p0, g0 = p - p.mean(0), g - g.mean(0)
        R, s = orthogonal_procrustes(p0, g0)
        if np.linalg.det(R) < 0:  # SciPy allows reflections; we do not: redo with det +1
            U, S, Vt = np.linalg.svd(p0.T @ g0)
            D = np.diag([1, 1, -1.0])
            R, s = U @ D @ Vt, (S * np.diag(D)).sum()
        scale = s / (p0 ** 2).sum()
        out.append(np.linalg.norm(scale * p0 @ R - g0, axis=-1).mean())
    return np.array(out)


def test_pa_mpjpe_matches_scipy_on_random_poses(rng):
    gt = rng.normal(0, 300, size=(50, 17, 3))
    pred = gt + rng.normal(0, 40, size=gt.shape)
    np.testing.assert_allclose(pa_mpjpe(pred, gt), _independent_pa_mpjpe(pred, gt), rtol=1e-8)


def test_pa_mpjpe_removes_similarity_transforms(rng):
    gt = rng.normal(0, 300, size=(8, 17, 3))
    R = Rotation.random(8, random_state=1).as_matrix()
    pred = 1.7 * np.einsum("nij,nkj->nki", R, gt) + rng.normal(0, 500, size=(8, 1, 3))
    assert pa_mpjpe(pred, gt).max() < 1e-8
    assert pa_mpjpe(pred, gt, scale=False).min() > 10  # rigid-only cannot undo the scale
    assert mpjpe(pred, gt).min() > 10


def test_pa_mpjpe_does_not_undo_a_mirror(rng):
    gt = rng.normal(0, 300, size=(4, 17, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert pa_mpjpe(mirrored, gt).min() > 1.0


def test_mpjpe_is_root_aligned_and_in_mm():
    gt = np.zeros((2, 17, 3))
    pred = gt + np.array([100.0, 0, 0])  # a pure translation vanishes after root alignment
    assert mpjpe(pred, gt).max() == 0
    pred[:, 3] += [0, 30, 40]  # one joint 50 mm off
    np.testing.assert_allclose(mpjpe(pred, gt), 50 / 17)
    np.testing.assert_allclose(mpjpe(pred, gt, root=None), (16 * 100 + np.hypot(100, 50)) / 17)


def test_n_mpjpe_removes_scale(rng):
    gt = rng.normal(0, 300, size=(5, 17, 3))
    assert n_mpjpe(gt * 0.8, gt).max() < 1e-9
    assert mpjpe(gt * 0.8, gt).min() > 1


def test_n_mpjpe_aligns_the_roots_before_the_scale(rng):
    # a pose shrunk to 0.8x about its own root and standing elsewhere: same shape, same
    # scale-free error (zero); the scale alone, fitted about the world origin, cannot undo it
    gt = rng.normal(0, 300, size=(5, 17, 3)) + np.array([200.0, -500.0, 900.0])
    root = gt[:, :1]
    moved = 0.8 * (gt - root) + root + np.array([1500.0, 700.0, -300.0])
    assert n_mpjpe(moved, gt).max() < 1e-9
    assert mpjpe(moved, gt).min() > 1  # the shrinking is an error before the scale fit


def _cross(a: float, b: float, d: float) -> np.ndarray:
    """A root at the origin and a point at +-a on x, +-b on y, +-d on z: [1, 7, 3]."""
    pose = [[0, 0, 0], [a, 0, 0], [-a, 0, 0], [0, b, 0], [0, -b, 0], [0, 0, d], [0, 0, -d]]
    return np.array([pose], dtype=np.float64)


def test_evaluate_scores_pred_against_gt_by_hand():
    # gt arms 300, 100, 200 mm; pred arms all 50 mm. Every alignment keeps the axes
    # (the cross-covariance is diagonal and positive), so the values follow by hand:
    # pred onto gt: scale (300 + 100 + 200) / (3 * 50) = 4 puts every pred arm at 200 mm,
    # off by 100, 100, 0 mm -> (2 * 100 + 2 * 100) / 7 joints.
    # gt onto pred (the wrong way round): scale 50 * 600 / (300² + 100² + 200²) = 3 / 14
    # puts the gt arms at 900/14, 300/14, 600/14, off by 200/14, 400/14, 100/14 -> 100 / 7.
    gt, pred = _cross(300, 100, 200), _cross(50, 50, 50)
    out = evaluate(pred, gt)
    assert out["pa_mpjpe"][0] == pytest.approx(400 / 7)
    assert out["n_mpjpe"][0] == pytest.approx(400 / 7)
    assert out["mpjpe"][0] == pytest.approx((2 * 250 + 2 * 50 + 2 * 150) / 7)
    assert out["pck3d"][0] == pytest.approx(5 / 7)  # 0, 50, 50, 150, 150 mm are within 150
    # AUC over 0, 5, ..., 150 mm: 0 mm counts 31 times, 50 mm 21 times, 150 mm once
    assert out["auc"][0] == pytest.approx((31 + 2 * 21 + 2 * 1) / (7 * 31))
    assert pa_mpjpe(gt, pred)[0] == pytest.approx(100 / 7)  # the other order differs
    # Procrustes removes a rotation and a shift of the prediction; MPJPE does not
    R = Rotation.from_rotvec([0.4, -0.9, 0.3]).as_matrix()
    turned = pred @ R.T + np.array([100.0, 2000.0, -50.0])
    assert evaluate(turned, gt)["pa_mpjpe"][0] == pytest.approx(400 / 7)
    assert evaluate(turned, gt)["n_mpjpe"][0] > 400 / 7 + 1


def test_pck_and_auc():
    gt = np.zeros((1, 17, 3))
    pred = gt.copy()
    pred[0, 1:9, 0] = 100.0  # 8 joints 100 mm off; the root stays exact
    pred[0, 9:, 0] = 200.0   # 8 joints beyond 150 mm
    assert pck3d(pred, gt)[0] == pytest.approx(9 / 17)
    # the root is within all 31 thresholds, a joint at 100 mm within 11 (100..150)
    expected = (1 * 31 + 8 * 11) / (17 * 31)
    assert auc(pred, gt)[0] == pytest.approx(expected)


def test_torch_in_torch_out_numpy_in_numpy_out(rng):
    gt = rng.normal(0, 300, size=(3, 17, 3))
    pred = gt + 10
    assert isinstance(mpjpe(pred, gt), np.ndarray)
    out = pa_mpjpe(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\[N, J, 3\]"):
        mpjpe(np.zeros((17, 3)), np.zeros((17, 3)))
    with pytest.raises(ValueError, match=r"\[N, J, 3\]"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))
    bad = np.zeros((1, 17, 3))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pa_mpjpe(bad, np.zeros((1, 17, 3)))


def test_aggregate_per_group(rng):
    gt = rng.normal(0, 300, size=(6, 17, 3))
    pred = gt + rng.normal(0, 20, size=gt.shape)
    per = evaluate(pred, gt)
    table = aggregate(per, ["cam1", "cam2"] * 3)
    assert table["cam1"]["count"] == 3 and table["all"]["count"] == 6
    assert table["cam1"]["mpjpe"] == pytest.approx(per["mpjpe"][::2].mean())
    assert set(table["all"]) == {"mpjpe", "pa_mpjpe", "n_mpjpe", "pck3d", "auc", "count"}
    with pytest.raises(ValueError, match="group labels"):
        aggregate(per, ["a"])
