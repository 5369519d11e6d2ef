"""Triangulation benchmark: the `triangulate` op against the usual PyTorch ways.

Rows: a per-point Python loop over `torch.linalg.svd` (the learnable-triangulation way),
one batched `torch.linalg.svd` of all 2V x 4 systems, one batched `torch.linalg.eigh` of the
4x4 normal matrices (float32, and float64), the inhomogeneous DLT by batched LU solves in
float64 (no eigen- or singular-value solver: the baseline that runs where cuSOLVER's
batched eigh failed, on an H200), and the op; forward and forward+backward, V = 4 views of
the Human3.6M rig and J = 17 joints, float32 inputs. A baseline that fails is a row saying
so; the op is timed all the same.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from pose3d.bench.timing import format_table, measure
from pose3d.geometry import h36m_cameras
from pose3d.ops.triangulate import (
    dlt_matrix,
    triangulate,
    triangulate_loop_reference,
    triangulate_svd_reference,
)

VIEWS, JOINTS = 4, 17
SIZES, QUICK_SIZES = (8, 256, 8192), (8, 256)
LOOP_TUPLES = 8  # the per-point loop is timed on at most this many tuples, then scaled


def make_problems(batch: int, device: torch.device, noise_px: float = 1.0,
                  seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Poses near the origin (z up, 0-1800 mm) seen by the four Human3.6M cameras of S1.

    Returns points2d [B, 4, 17, 2] px (with Gaussian noise), proj [B, 4, 3, 4],
    confidences [B, 4, 17] in [0.5, 1], float32 on `device`.
    """
    g = torch.Generator().manual_seed(seed)
    P = torch.tensor(np.stack([c.P for c in h36m_cameras("S1")]), dtype=torch.float64)
    low, high = torch.tensor([-500.0, -500.0, 0.0]), torch.tensor([500.0, 500.0, 1800.0])
    points = low + (high - low) * torch.rand(batch, JOINTS, 3, generator=g, dtype=torch.float64)
    proj = P.expand(batch, VIEWS, 3, 4)
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], -1)
    x = torch.einsum("bvik,bjk->bvji", proj, homogeneous)
    uv = x[..., :2] / x[..., 2:] + noise_px * torch.randn(x[..., :2].shape, generator=g,
                                                          dtype=torch.float64)
    conf = 0.5 + 0.5 * torch.rand(batch, VIEWS, JOINTS, generator=g, dtype=torch.float64)
    return tuple(t.to(device=device, dtype=torch.float32).contiguous() for t in (uv, proj, conf))


def batched_svd(points2d: Tensor, proj: Tensor, confidences: Tensor) -> Tensor:
    return triangulate_svd_reference(points2d, proj, confidences, normalise=False)


def batched_eigh(points2d: Tensor, proj: Tensor, confidences: Tensor) -> Tensor:
    """Plain DLT through the eigenvector of the smallest eigenvalue of A^T A."""
    A = dlt_matrix(points2d, proj, confidences)
    X = torch.linalg.eigh(A.mT @ A).eigenvectors[..., 0]
    return X[..., :3] / X[..., 3:]


def batched_eigh_float64(points2d: Tensor, proj: Tensor, confidences: Tensor) -> Tensor:
    """batched_eigh with the normal matrices in float64 (another cuSOLVER path)."""
    return batched_eigh(points2d.double(), proj.double(), confidences.double()).float()


def batched_solve_float64(points2d: Tensor, proj: Tensor, confidences: Tensor) -> Tensor:
    """The inhomogeneous DLT (Hartley and Zisserman, sec. 12.2: the point's w fixed at 1):
    least squares of A[:, :3] X = -A[:, 3] by its 3x3 normal equations, one batched LU
    solve (torch.linalg.solve) in float64 (the normal matrix holds pixels x mm squared)."""
    A = dlt_matrix(points2d.double(), proj.double(), confidences.double())
    M = A[..., :3]
    X = torch.linalg.solve(M.mT @ M, -(M.mT @ A[..., 3:]))
    return X[..., 0].float()


METHODS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "per-point svd loop": triangulate_loop_reference,
    "batched svd": batched_svd,
    "batched eigh": batched_eigh,
    "batched eigh float64": batched_eigh_float64,
    "batched solve float64": batched_solve_float64,
    "pose3d triangulate": triangulate,
}
BASELINES = {"loop": "per-point svd loop", "batched svd": "batched svd",
             "batched eigh": "batched eigh", "eigh f64": "batched eigh float64",
             "solve f64": "batched solve float64"}  # column name -> method


def _seconds(fn, inputs: tuple[Tensor, ...], backward: bool, device: torch.device) -> float:
    if not backward:
        def step():
            with torch.no_grad():
                fn(*inputs)
    else:
        inputs = tuple(t.detach().requires_grad_() for t in inputs)

        def step():
            torch.autograd.grad(fn(*inputs).sum(), inputs)
    return measure(step, device, warmup=1, repeats=5, max_seconds=5.0).median_s


def _format(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def _time_method(name: str, batch: int, device: torch.device) -> tuple[float, float, str]:
    """(forward s, forward+backward s, note) for `batch` tuples; the loop is scaled up."""
    timed = min(batch, LOOP_TUPLES) if name == "per-point svd loop" else batch
    inputs = make_problems(timed, device)
    fwd, both = (_seconds(METHODS[name], inputs, backward, device) * batch / timed
                 for backward in (False, True))
    note = f"scaled from {timed * JOINTS} points" if timed < batch else ""
    return fwd, both, note


def _time_baseline(name: str, batch: int, device: torch.device) -> tuple[float, float, str]:
    """`_time_method` for a method we compare against; its failure is a row of the table,
    not the end of the benchmark. (On an H200 with torch 2.11, cuSOLVER's batched eigh
    stopped with CUSOLVER_STATUS_INTERNAL_ERROR and took every figure with it.)"""
    if name == "pose3d triangulate":
        return _time_method(name, batch, device)  # ours failing is an error
    try:
        return _time_method(name, batch, device)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0][:80]
        return math.nan, math.nan, f"failed: {reason}"


def _ratio(theirs: float, ours: float) -> str:
    return "n/a" if math.isnan(theirs) else f"{theirs / ours:.1f}x"


def run(args: argparse.Namespace, device: torch.device) -> str:
    """Markdown tables: timings per method and batch size, then the op's speed-ups."""
    sizes = QUICK_SIZES if getattr(args, "quick", False) else SIZES
    rows, summary = [], []
    for batch in sizes:
        times = {name: _time_baseline(name, batch, device) for name in METHODS}
        ours = times["pose3d triangulate"]
        for name, (fwd, both, note) in times.items():
            name = f"{name} ({note})" if note else name
            rows.append([batch, batch * JOINTS, name, _format(fwd), _format(both)])
        summary.append([batch] + [_ratio(times[m][k], ours[k])
                                  for m in BASELINES.values() for k in (0, 1)])
    title = (f"## triangulate: V={VIEWS} views, J={JOINTS} joints, float32, {device.type} "
             f"({torch.get_num_threads()} CPU threads)")
    timings = format_table(["B", "problems", "method", "forward", "forward+backward"], rows)
    speedups = format_table(
        ["B", *(f"vs {c} {p}" for c in BASELINES for p in ("fwd", "fwd+bwd"))], summary)
    note = (f"Median wall time per call. The per-point loop is timed on at most {LOOP_TUPLES} "
            "tuples and scaled per point to B. Speed-up = their time / the op's time.")
    return "\n\n".join([title, timings, "Speed-up of pose3d triangulate:", speedups, note])
