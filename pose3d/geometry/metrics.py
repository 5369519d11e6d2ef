"""Pose metrics in millimetres, batched over [N, J, 3], for torch tensors or numpy arrays.

Every function returns one value per pose ([N]) in the input's type, so results can be
aggregated per camera, action or subject with `aggregate`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from pose3d.skeleton.h36m import ROOT

PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = tuple(float(t) for t in np.linspace(0.0, 150.0, 31))


def _to_torch(pred, gt) -> tuple[Tensor, Tensor, bool]:
    is_numpy = isinstance(pred, np.ndarray) or isinstance(gt, np.ndarray)
    p = torch.as_tensor(pred, dtype=torch.float64)
    g = torch.as_tensor(gt, dtype=torch.float64, device=p.device)
    if p.shape != g.shape or p.dim() != 3 or p.shape[-1] != 3:
        raise ValueError(f"pred and gt must both be [N, J, 3]; got {list(p.shape)} and "
                         f"{list(g.shape)}")
    if not (torch.isfinite(p).all() and torch.isfinite(g).all()):
        raise ValueError("pred or gt contains NaN or infinite values")
    return p, g, is_numpy


def _out(x: Tensor, is_numpy: bool, like) -> Tensor | np.ndarray:
    if is_numpy:
        return x.cpu().numpy()
    return x.to(like.dtype if torch.is_floating_point(like) else torch.float32)


def root_align(poses: Tensor, root: int = ROOT) -> Tensor:
    """Subtract the root joint: [N, J, 3] -> [N, J, 3]."""
    return poses - poses[:, root:root + 1]


def joint_errors(pred, gt, root: int | None = ROOT) -> Tensor | np.ndarray:
    """Per-joint Euclidean error [N, J] in mm, after root alignment unless root is None."""
    p, g, is_numpy = _to_torch(pred, gt)
    if root is not None:
        p, g = root_align(p, root), root_align(g, root)
    return _out((p - g).norm(dim=-1), is_numpy, torch.as_tensor(pred))


def mpjpe(pred, gt, root: int | None = ROOT) -> Tensor | np.ndarray:
    """Mean per-joint position error [N] in mm, root-aligned (pass root=None for absolute)."""
    p, g, is_numpy = _to_torch(pred, gt)
    if root is not None:
        p, g = root_align(p, root), root_align(g, root)
    return _out((p - g).norm(dim=-1).mean(-1), is_numpy, torch.as_tensor(pred))


def procrustes_align(pred: Tensor, gt: Tensor, scale: bool = True) -> Tensor:
    """`pred` [N, J, 3] moved onto `gt` by the best similarity (or rigid) transform.

    Reflection-safe: the rotation is forced to det +1 (a mirrored pose is not 'aligned' by a
    reflection), so left/right swaps still count as errors.
    """
    mu_p, mu_g = pred.mean(1, keepdim=True), gt.mean(1, keepdim=True)
    p, g = pred - mu_p, gt - mu_g
    U, S, Vh = torch.linalg.svd(p.transpose(1, 2) @ g)
    sign = torch.sign(torch.linalg.det(U @ Vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    D = torch.diag_embed(torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], -1))
    R = U @ D @ Vh
    if scale:
        trace = (S * torch.diagonal(D, dim1=-2, dim2=-1)).sum(-1)
        s = trace / p.pow(2).sum((1, 2)).clamp_min(1e-12)
    else:
        s = torch.ones_like(sign)
    return s[:, None, None] * p @ R + mu_g


def pa_mpjpe(pred, gt, scale: bool = True) -> Tensor | np.ndarray:
    """MPJPE [N] after Procrustes alignment with scale (set scale=False for rigid only).

    Reflection-safe: see `procrustes_align`.
    """
    p, g, is_numpy = _to_torch(pred, gt)
    aligned = procrustes_align(p, g, scale=scale)
    return _out((aligned - g).norm(dim=-1).mean(-1), is_numpy, torch.as_tensor(pred))


def n_mpjpe(pred, gt, root: int = ROOT) -> Tensor | np.ndarray:
    """MPJPE [N] after root alignment and the least-squares scale of pred onto gt."""
    p, g, is_numpy = _to_torch(pred, gt)
    p, g = root_align(p, root), root_align(g, root)
    s = (p * g).sum((1, 2)) / p.pow(2).sum((1, 2)).clamp_min(1e-12)
    return _out((s[:, None, None] * p - g).norm(dim=-1).mean(-1), is_numpy,
                torch.as_tensor(pred))


def pck3d(pred, gt, threshold_mm: float = PCK_THRESHOLD_MM,
          root: int = ROOT) -> Tensor | np.ndarray:
    """Fraction [N] of root-aligned joints within `threshold_mm` (3DPCK)."""
    err = torch.as_tensor(joint_errors(pred, gt, root))
    out = (err <= threshold_mm).double().mean(-1)
    return out.numpy() if isinstance(pred, np.ndarray) or isinstance(gt, np.ndarray) else out


def auc(pred, gt, thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM,
        root: int = ROOT) -> Tensor | np.ndarray:
    """Area under the 3DPCK curve [N] over `thresholds_mm` (0-150 mm), in [0, 1]."""
    err = torch.as_tensor(joint_errors(pred, gt, root))
    thr = torch.as_tensor(list(thresholds_mm), dtype=err.dtype)
    out = (err.unsqueeze(-1) <= thr).double().mean((-2, -1))
    return out.numpy() if isinstance(pred, np.ndarray) or isinstance(gt, np.ndarray) else out


ALL_METRICS = {"mpjpe": mpjpe, "pa_mpjpe": pa_mpjpe, "n_mpjpe": n_mpjpe, "pck3d": pck3d,
               "auc": auc}


def evaluate(pred, gt) -> dict[str, np.ndarray]:
    """Every metric per pose: name -> [N] numpy array (mm, or fractions for pck3d / auc)."""
    return {name: np.asarray(torch.as_tensor(fn(pred, gt)).cpu()) for name, fn in
            ALL_METRICS.items()}


def aggregate(per_pose: dict[str, np.ndarray], groups: Sequence[str]) -> dict[str, dict]:
    """Means of per-pose metrics per group label (a camera, action or subject per pose),
    plus 'all'. Returns {group: {metric: mean, 'count': n}}."""
    groups = list(groups)
    n = len(groups)
    for name, values in per_pose.items():
        if len(values) != n:
            raise ValueError(f"metric {name} has {len(values)} values for {n} group labels")
    index: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        index[str(g)].append(i)
    out = {}
    for g in sorted(index):
        idx = np.asarray(index[g])
        out[g] = {k: float(np.mean(v[idx])) for k, v in per_pose.items()} | {"count": len(idx)}
    out["all"] = {k: float(np.mean(v)) for k, v in per_pose.items()} | {"count": n}
    return out
