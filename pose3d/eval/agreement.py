"""How a single-view model's predictions of the same tuple agree across its views.

Eq. 9 rewards agreement; these numbers tell whether agreement came with accuracy. All are
root-aligned world millimetres over the tuples seen by at least two views:

    per_view_mpjpe   the usual MPJPE of each view's prediction
    consensus_mpjpe  MPJPE of the mean of a tuple's view predictions
    spread_mm        mean distance of a view's joint from that mean (0 = perfect agreement)
    scale            mean joint-to-root distance, prediction over GT (< 1: shrunk poses)
    err_x_mm, err_y_mm, err_depth_mm
                     mean absolute error along each view's camera axes (x right, y down,
                     depth), when the predictions carry the camera rotations
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from pose3d.eval.predictions import Predictions
from pose3d.geometry.metrics import joint_errors, root_align

ROWS = {"per_view_mpjpe": "MPJPE per view (mm)", "consensus_mpjpe": "MPJPE of the views' mean (mm)",
        "spread_mm": "spread of the views (mm)", "scale": "scale (prediction / GT)",
        "err_x_mm": "error along camera x (mm)", "err_y_mm": "error along camera y (mm)",
        "err_depth_mm": "error along camera depth (mm)"}


def tuple_groups(keys: list[str]) -> list[np.ndarray]:
    """Indices of the (tuple, view) rows of each tuple seen by at least two views; a key is
    'TUPLE/VIEW'."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key.rsplit("/", 1)[0]].append(i)
    return [np.array(g) for g in groups.values() if len(g) >= 2]


def view_agreement(preds: Predictions) -> dict[str, float]:
    """The numbers in the module docstring for one model's predictions."""
    groups = tuple_groups(preds.key)
    if not groups:
        raise ValueError("view agreement needs tuples seen by at least two views")
    rows = np.concatenate(groups)
    pred, gt = root_align(preds.pred), root_align(preds.gt)
    means = np.stack([pred[g].mean(axis=0) for g in groups])  # [T, J, 3] per tuple
    spread = [np.linalg.norm(pred[g] - m, axis=-1).mean() for g, m in zip(groups, means)]
    out = {
        "per_view_mpjpe": float(joint_errors(pred[rows], gt[rows], root=None).mean()),
        "consensus_mpjpe": float(joint_errors(means, gt[[g[0] for g in groups]],
                                              root=None).mean()),
        "spread_mm": float(np.mean(spread)),
        "scale": float(np.linalg.norm(pred[rows], axis=-1).sum()
                       / np.linalg.norm(gt[rows], axis=-1).sum()),
    }
    if preds.rotation is not None:
        # world -> camera axes: x_cam = R x_world (translation cancels in a difference)
        err = np.einsum("nab,njb->nja", preds.rotation[rows], pred[rows] - gt[rows])
        axes = np.abs(err).mean(axis=(0, 1))
        out.update(err_x_mm=float(axes[0]), err_y_mm=float(axes[1]),
                   err_depth_mm=float(axes[2]))
    return out


def agreement_table(summaries: dict[str, dict]) -> str:
    """Markdown: rows = the numbers above, columns = models (those with a 'views' entry)."""
    names = [n for n, s in summaries.items() if "views" in s]
    lines = ["| | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for key, label in ROWS.items():
        if all(key in summaries[n]["views"] for n in names):
            cells = (f"{summaries[n]['views'][key]:.{3 if key == 'scale' else 2}f}"
                     for n in names)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
