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
