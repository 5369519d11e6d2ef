"""pose3d.ops.triangulate: accuracy (float64 SVD, OpenCV, exact projections through the
Human3.6M rig), gradients, torch.library registration, degenerate problems, CUDA."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest
import torch

from pose3d.geometry import h36m_cameras
from pose3d.ops.triangulate import (
    dlt_matrix,
    normalising_frame,
    triangulate,
    triangulate_loop_reference,
    triangulate_svd_reference,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
OP = torch.ops.pose3d.triangulate.default
BACKWARD = torch.ops.pose3d.triangulate_backward.default


def look_at(centre: np.ndarray, target: np.ndarray, focal: float) -> np.ndarray:
    """P [3, 4] of a pinhole camera at `centre` looking at `target` (z up world)."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    K = np.array([[focal, 0.0, 500.0], [0.0, focal, 500.0], [0.0, 0.0, 1.0]])
    return K @ np.concatenate([R, -R @ centre[:, None]], axis=1)


def project(proj: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """proj [B, V, 3, 4], points [B, J, 3] -> pixels [B, V, J, 2]."""
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], -1)
    x = torch.einsum("bvik,bjk->bvji", proj, homogeneous)
    return x[..., :2] / x[..., 2:]


def random_problems(batch: int, views: int, joints: int, noise_px: float, seed: int = 0):
    """Each tuple its own rig: `views` cameras 3-6 m around a subject standing somewhere in
    a 10 m room, looking at it. Returns float64 points2d, proj, confidences, truth."""
    rng = np.random.default_rng(seed)
    projs, truths = [], []
    for _ in range(batch):
        subject = np.array([*rng.uniform(-5000, 5000, 2), 0.0])
        angles = rng.uniform(0, 2 * np.pi, views)
        radius = rng.uniform(3000, 6000, views)
        centres = subject + np.stack([radius * np.cos(angles), radius * np.sin(angles),
                                      rng.uniform(800, 2500, views)], axis=1)
        targets = subject + [0.0, 0.0, 900.0] + rng.normal(0, 200, (views, 3))
        projs.append(np.stack([look_at(c, t, rng.uniform(800, 1600))
                               for c, t in zip(centres, targets)]))
        truths.append(subject + rng.uniform([-600, -600, 0], [600, 600, 1800], (joints, 3)))
    proj, truth = torch.tensor(np.stack(projs)), torch.tensor(np.stack(truths))
    points2d = project(proj, truth) + noise_px * torch.tensor(
        rng.normal(size=(batch, views, joints, 2)))
    confidences = torch.tensor(rng.uniform(0.2, 1.0, (batch, views, joints)))
    return points2d, proj, confidences, truth


def h36m_problems(subject: str, batch: int, seed: int = 0):
    """Noise-free projections of poses near the origin through the four H36M cameras."""
    g = torch.Generator().manual_seed(seed)
    P = torch.tensor(np.stack([c.P for c in h36m_cameras(subject)]))
    unit = torch.rand(batch, 17, 3, generator=g, dtype=torch.float64)
    truth = torch.tensor([-600.0, -600.0, 0.0]) + unit * torch.tensor([1200.0, 1200.0, 1800.0])
    proj = P.expand(batch, 4, 3, 4).contiguous()
    return project(proj, truth), proj, truth


def grads_of(fn, inputs, weights):
    inputs = tuple(t.detach().clone().requires_grad_() for t in inputs)
    out = fn(*inputs)
    return out, torch.autograd.grad((out * weights).sum(), inputs)


# --- accuracy -------------------------------------------------------------------------

@pytest.mark.parametrize("views", [2, 3, 4, 6])
def test_float32_within_1e4_of_float64_svd(views):
    points2d, proj, conf, _ = random_problems(64, views, 17, noise_px=2.0, seed=views)
    inputs32 = tuple(t.float() for t in (points2d, proj, conf))
    ours, valid = triangulate(*inputs32, return_valid=True)
    ref = triangulate_svd_reference(*(t.double() for t in inputs32))  # same rounded inputs
    assert ours.dtype == torch.float32 and valid.all()
    rel = (ours.double() - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert rel.max() < 1e-4, rel.max()


def test_float64_matches_svd_reference():
    points2d, proj, conf, _ = random_problems(32, 4, 17, noise_px=3.0, seed=1)
    ours = triangulate(points2d, proj, conf)
    ref = triangulate_svd_reference(points2d, proj, conf)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-7)


@pytest.mark.parametrize("subject", ["S1", "S9"])
def test_exact_on_noise_free_h36m_projections(subject):
    points2d, proj, truth = h36m_problems(subject, 16)
    ours64, valid = triangulate(points2d, proj, return_valid=True)
    assert valid.all()
    assert (ours64 - truth).norm(dim=-1).max() < 1e-6  # mm
    ours32 = triangulate(points2d.float(), proj.float())
    assert (ours32.double() - truth).norm(dim=-1).max() < 0.02  # mm, fp32 input rounding


def test_two_views_agree_with_opencv():
    points2d, proj, truth = h36m_problems("S1", 1, seed=3)
    pair = [0, 2]
    P, uv = proj[0, pair].numpy(), points2d[0, pair].numpy()

    def cv2_points(P0, P1, noisy):
        X = cv2.triangulatePoints(P0, P1, noisy[0].T.copy(), noisy[1].T.copy())
        return X[:3] / X[3]

    exact = torch.tensor(cv2_points(P[0], P[1], uv).T)
    ours = triangulate(points2d[:, pair], proj[:, pair])[0]
    torch.testing.assert_close(ours, exact, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, truth[0], rtol=0, atol=1e-6)

    rng = np.random.default_rng(0)
    noisy = uv + rng.normal(size=uv.shape)
    ours = triangulate(torch.tensor(noisy)[None], proj[:, pair])[0].numpy()
    # OpenCV's plain DLT fed our normalised frame (P H, then X = H X~) is our system exactly.
    m, s = normalising_frame(proj[:, pair], torch.ones(1, 2, 17, dtype=torch.float64))
    H = np.eye(4)
    H[:3, :3] *= s[0, 0].item()
    H[:3, 3] = m[0, 0].numpy()
    framed = H @ np.vstack([cv2_points(P[0] @ H, P[1] @ H, noisy), np.ones((1, 17))])
    np.testing.assert_allclose(ours, (framed[:3] / framed[3]).T, rtol=0, atol=1e-6)
    # In world coordinates the two weight the noise slightly differently: far below the error.
    plain = cv2_points(P[0], P[1], noisy).T
    error = np.linalg.norm(ours - truth[0].numpy(), axis=1).mean()
    assert np.linalg.norm(ours - plain, axis=1).mean() < 0.02 * error


def test_confidence_weighting_and_default():
    points2d, proj, conf, _ = random_problems(4, 4, 5, noise_px=2.0, seed=2)
    torch.testing.assert_close(triangulate(points2d, proj), triangulate(points2d, proj,
                                                                        torch.ones_like(conf)))
    torch.testing.assert_close(triangulate(points2d, proj, conf),
                               triangulate(points2d, proj, 7.5 * conf))
    assert not torch.allclose(triangulate(points2d, proj, conf), triangulate(points2d, proj))
    # Rows scaled by the confidences: a view with a tiny weight barely counts.
    conf[:, 0] = 1e-6
    without = triangulate(points2d[:, 1:], proj[:, 1:], conf[:, 1:])
    torch.testing.assert_close(triangulate(points2d, proj, conf), without, rtol=0, atol=1e-3)


def test_independent_of_world_frame():
    points2d, proj, conf, _ = random_problems(4, 3, 6, noise_px=2.0, seed=4)
    # World X = scale * R X' + t: the same cameras seen from a rotated, shifted, metre frame.
    R = torch.tensor(cv2.Rodrigues(np.array([0.3, -0.2, 1.1]))[0])
    scale, t = 1000.0, torch.tensor([120.0, -4000.0, 35.0], dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = scale * R, t
    ours = triangulate(points2d, proj, conf)
    in_metres = triangulate(points2d, proj @ T, conf)
    torch.testing.assert_close(scale * in_metres @ R.T + t, ours, rtol=1e-9, atol=1e-6)


def test_simd_and_scalar_paths_agree():
    # The CPU solves problems 8 at a time in SIMD lanes and a chunk's tail one at a time,
    # with the scalar arithmetic of the CUDA kernel: both must give the same answers.
    points2d, proj, conf, _ = random_problems(2, 4, 17, noise_px=2.0, seed=18)
    inputs = tuple(t.float() for t in (points2d, proj, conf))
    weights = torch.randn(2, 17, 3)
    batched, grads = grads_of(triangulate, inputs, weights)
    for b, j in [(0, 0), (0, 9), (1, 16)]:
        one = (inputs[0][b:b + 1, :, j:j + 1], inputs[1][b:b + 1], inputs[2][b:b + 1, :, j:j + 1])
        alone, alone_grads = grads_of(triangulate, one, weights[b:b + 1, j:j + 1])
        torch.testing.assert_close(alone[0, 0], batched[b, j], rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(alone_grads[0][0, :, 0], grads[0][b, :, j], rtol=1e-3,
                                   atol=1e-5)


def test_references_agree_with_each_other():
    points2d, proj, conf, truth = random_problems(2, 3, 4, noise_px=0.0, seed=5)
    plain = triangulate_svd_reference(points2d, proj, conf, normalise=False)
    torch.testing.assert_close(triangulate_loop_reference(points2d, proj, conf), plain)
    torch.testing.assert_close(plain, truth, rtol=0, atol=1e-6)
    assert dlt_matrix(points2d, proj, conf).shape == (2, 4, 6, 4)


# --- gradients and registration -------------------------------------------------------

def test_gradcheck_float64():
    points2d, proj, conf, _ = random_problems(2, 3, 2, noise_px=3.0, seed=6)
    inputs = tuple(t.clone().requires_grad_() for t in (points2d, proj, conf))
    assert torch.autograd.gradcheck(triangulate, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_backward_matches_autograd_through_svd():
    points2d, proj, conf, _ = random_problems(8, 4, 17, noise_px=3.0, seed=7)
    weights = torch.randn(8, 17, 3, dtype=torch.float64)
    out, grads = grads_of(triangulate, (points2d, proj, conf), weights)
    ref_out, ref_grads = grads_of(triangulate_svd_reference, (points2d, proj, conf), weights)
    torch.testing.assert_close(out, ref_out)
    for ours, ref in zip(grads, ref_grads):
        torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-9)


def test_double_backward_is_refused():
    points2d, proj, conf, _ = random_problems(1, 3, 2, noise_px=1.0)
    points2d.requires_grad_()
    grad, = torch.autograd.grad(triangulate(points2d, proj, conf).sum(), points2d,
                                create_graph=True)
    with pytest.raises(RuntimeError, match="triangulate has no second derivative"):
        grad.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    points2d, proj, conf, _ = random_problems(2, 3, 4, noise_px=2.0, seed=8)
    args = [t.to(dtype).requires_grad_() for t in (points2d, proj, conf)]
    torch.library.opcheck(OP, args)
    grad = torch.randn(2, 4, 3, dtype=dtype)
    torch.library.opcheck(BACKWARD, [grad] + [t.detach() for t in args])


def test_compiles_fullgraph():
    points2d, proj, conf, _ = random_problems(2, 4, 5, noise_px=2.0, seed=9)
    inputs = tuple(t.float() for t in (points2d, proj, conf))
    weights = torch.randn(2, 5, 3)
    compiled = torch.compile(triangulate, fullgraph=True, backend="aot_eager")
    out, grads = grads_of(compiled, inputs, weights)
    eager_out, eager_grads = grads_of(triangulate, inputs, weights)
    torch.testing.assert_close(out, eager_out)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_compiles_fullgraph_inductor():
    points2d, proj, _, _ = random_problems(2, 4, 5, noise_px=2.0, seed=10)

    def loss(points2d, proj):
        points3d, valid = triangulate(points2d, proj, return_valid=True)
        return (points3d * valid[..., None]).square().sum()

    inputs = (points2d.float(), proj.float())
    compiled = torch.compile(loss, fullgraph=True)
    torch.testing.assert_close(compiled(*inputs), loss(*inputs))


# --- degenerate problems --------------------------------------------------------------

def _assert_invalid_and_finite(points2d, proj, conf, expect_valid):
    out, valid = triangulate(points2d, proj, conf, return_valid=True)
    assert valid.tolist() == expect_valid
    assert torch.isfinite(out).all()
    assert (out[~valid] == 0).all()  # the sentinel
    _, grads = grads_of(lambda a, b, c: triangulate(a, b, c), (points2d, proj, conf),
                        torch.ones_like(out))
    for g in grads:
        assert torch.isfinite(g).all()
    # An invalid problem passes no gradient to its points or confidences.
    invalid = ~valid
    assert (grads[0].permute(0, 2, 1, 3)[invalid] == 0).all()
    assert (grads[2].permute(0, 2, 1)[invalid] == 0).all()
    return out, valid


def test_degenerate_confidences():
    points2d, proj, conf, _ = random_problems(1, 3, 4, noise_px=1.0, seed=11)
    conf[0, :, 0] = 0.0                  # no view
    conf[0, 1:, 1] = 0.0                 # one view
    conf[0, 1:, 2] = -0.5                # negative counts as zero: one view
    out, _ = _assert_invalid_and_finite(points2d, proj, conf, [[False, False, False, True]])
    conf[0, 1:, 2] = 0.0
    torch.testing.assert_close(out, triangulate(points2d, proj, conf))


def test_identical_cameras_are_invalid():
    points2d, proj, conf, _ = random_problems(1, 2, 3, noise_px=0.0, seed=12)
    proj[0, 1] = proj[0, 0]
    points2d[0, 1, 0] = points2d[0, 0, 0]          # same ray twice: a line of solutions
    points2d[0, 1, 1] = points2d[0, 0, 1] + 25.0   # two rays through one centre
    _assert_invalid_and_finite(points2d, proj, conf, [[False, False, False]])
    _assert_invalid_and_finite(points2d.float(), proj.float(), conf.float(),
                               [[False, False, False]])


def test_parallel_rays_are_invalid():
    # Two cameras side by side, both looking along +y. Joint 0 is seen at the principal point
    # of both: parallel rays that meet only at infinity. Joint 1 is a finite point.
    P = torch.tensor(np.stack([look_at(np.array([x, 0.0, 0.0]), np.array([x, 1000.0, 0.0]),
                                       1000.0) for x in (0.0, 500.0)]))[None]
    points = torch.tensor([[[0.0, 1e3, 0.0], [200.0, 3000.0, 100.0]]], dtype=torch.float64)
    points2d = project(P, points)
    points2d[0, :, 0] = 500.0
    out, _ = _assert_invalid_and_finite(points2d, P, torch.ones(1, 2, 2, dtype=torch.float64),
                                        [[False, True]])
    torch.testing.assert_close(out[0, 1], torch.tensor([200.0, 3000.0, 100.0], dtype=torch.float64))


def test_missing_views_are_ignored():
    points2d, proj, conf, _ = random_problems(2, 4, 5, noise_px=1.0, seed=13)
    expected = triangulate(points2d[:, :3], proj[:, :3], conf[:, :3])
    points2d[:, 3] = float("nan")        # a missing view: garbage points,
    proj[:, 3] = 0.0                     # a zero camera,
    conf[:, 3] = 0.0                     # and no confidence
    out, _ = _assert_invalid_and_finite(points2d, proj, conf, [[True] * 5] * 2)
    torch.testing.assert_close(out, expected)


def test_invalid_problems_do_not_disturb_valid_ones():
    points2d, proj, conf, _ = random_problems(3, 3, 4, noise_px=1.0, seed=14)
    expected = triangulate(points2d, proj, conf)
    conf[1] = 0.0
    out, valid = triangulate(points2d, proj, conf, return_valid=True)
    assert valid.tolist() == [[True] * 4, [False] * 4, [True] * 4]
    torch.testing.assert_close(out[valid], expected[valid])


def test_empty_batch():
    out, valid = triangulate(torch.zeros(0, 2, 3, 2), torch.zeros(0, 2, 3, 4), return_valid=True)
    assert out.shape == (0, 3, 3) and valid.shape == (0, 3)


# --- input checks ---------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    points2d, proj, conf, _ = random_problems(2, 3, 4, noise_px=0.0)
    with pytest.raises(ValueError, match="points2d"):
        triangulate(points2d[..., :1], proj)
    with pytest.raises(ValueError, match="proj"):
        triangulate(points2d, proj[:, :2])
    with pytest.raises(ValueError, match="confidences"):
        triangulate(points2d, proj, conf[..., :2])
    with pytest.raises(TypeError, match="floating point"):
        triangulate(points2d.long(), proj)
    with pytest.raises(RuntimeError, match="share a dtype"):
        OP(points2d.float(), proj, conf)


def test_half_inputs_are_computed_in_float32():
    points2d, proj, _ = h36m_problems("S1", 2)
    out = triangulate(points2d.half(), proj.float())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# --- benchmark smoke ------------------------------------------------------------------

def test_benchmark_reports_every_method(monkeypatch):
    from pose3d.bench import triangulate as bench

    monkeypatch.setattr(bench, "QUICK_SIZES", (2,))
    text = bench.run(argparse.Namespace(quick=True, device="cpu"), torch.device("cpu"))
    for name in bench.METHODS:
        assert name in text
    assert "vs batched svd fwd" in text


def test_benchmark_reports_a_failing_baseline_and_goes_on(monkeypatch):
    from pose3d.bench import triangulate as bench

    def broken(*_):
        raise RuntimeError("cusolver error: CUSOLVER_STATUS_INTERNAL_ERROR\nmore")

    monkeypatch.setattr(bench, "QUICK_SIZES", (2,))
    monkeypatch.setitem(bench.METHODS, "batched eigh", broken)
    text = bench.run(argparse.Namespace(quick=True, device="cpu"), torch.device("cpu"))
    row = next(line for line in text.splitlines() if "batched eigh" in line)
    assert "failed: cusolver error: CUSOLVER_STATUS_INTERNAL_ERROR" in row and "more" not in row
    speedups = text.split("Speed-up of pose3d triangulate:")[1].splitlines()
    cells = next(line for line in speedups if line.startswith("| 2 ")).split("|")
    assert [c.strip() for c in cells[6:8]] == ["n/a", "n/a"]  # vs eigh (cells[1] is B)
    assert all(c.strip().endswith("x") for c in cells[2:6])  # loop and svd still timed
    monkeypatch.setitem(bench.METHODS, "pose3d triangulate", broken)
    with pytest.raises(RuntimeError, match="CUSOLVER"):  # our op failing is not a row
        bench.run(argparse.Namespace(quick=True, device="cpu"), torch.device("cpu"))


# --- CUDA -----------------------------------------------------------------------------

@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    points2d, proj, conf, _ = random_problems(16, 4, 17, noise_px=2.0, seed=15)
    conf[0, 1:, 0] = 0.0   # one invalid problem
    inputs = tuple(t.to(dtype) for t in (points2d, proj, conf))
    weights = torch.randn(16, 17, 3, dtype=dtype)
    out, grads = grads_of(triangulate, inputs, weights)
    cuda_out, cuda_grads = grads_of(triangulate, tuple(t.cuda() for t in inputs), weights.cuda())
    _, valid = triangulate(*inputs, return_valid=True)
    _, cuda_valid = triangulate(*(t.cuda() for t in inputs), return_valid=True)
    assert torch.equal(valid, cuda_valid.cpu())
    tol = dict(rtol=1e-4, atol=1e-2) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-7)
    torch.testing.assert_close(cuda_out.cpu(), out, **tol)
    for a, b in zip(cuda_grads, grads):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-3 if dtype == torch.float32 else 1e-7,
                                   atol=1e-3 * b.abs().max().item())


@pytest.mark.cuda
@needs_cuda
def test_cuda_float32_within_1e4_of_float64_svd():
    points2d, proj, conf, _ = random_problems(256, 4, 17, noise_px=2.0, seed=16)
    inputs32 = tuple(t.float().cuda() for t in (points2d, proj, conf))
    ours, valid = triangulate(*inputs32, return_valid=True)
    ref = triangulate_svd_reference(*(t.double().cpu() for t in inputs32))
    assert valid.all()
    rel = (ours.double().cpu() - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert rel.max() < 1e-4, rel.max()


@pytest.mark.cuda
@needs_cuda
def test_cuda_opcheck_and_compile():
    points2d, proj, conf, _ = random_problems(2, 3, 4, noise_px=2.0, seed=17)
    args = [t.float().cuda().requires_grad_() for t in (points2d, proj, conf)]
    torch.library.opcheck(OP, args)
    compiled = torch.compile(triangulate, fullgraph=True)
    torch.testing.assert_close(compiled(*args), triangulate(*args))


@pytest.mark.parametrize("name", ["batched eigh float64", "batched solve float64"])
def test_benchmark_baselines_for_cuda_recover_noise_free_points(name):
    from pose3d.bench import triangulate as bench

    points2d, proj, truth = h36m_problems("S1", 3, seed=4)
    conf = torch.rand(3, 4, 17, generator=torch.Generator().manual_seed(1)) + 0.5
    out = bench.METHODS[name](points2d.float(), proj.float(), conf)
    assert out.dtype == torch.float32 and out.shape == (3, 17, 3)
    torch.testing.assert_close(out.double(), truth, rtol=0, atol=0.5)  # mm, float32 inputs
    inputs = tuple(t.detach().requires_grad_() for t in (points2d.float(), proj.float(), conf))
    grads = torch.autograd.grad(bench.METHODS[name](*inputs).sum(), inputs)  # fwd+bwd is timed
    assert all(torch.isfinite(g).all() for g in grads)
