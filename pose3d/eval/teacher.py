"""The teacher's error per role: the multi-view model F_mv (algebraic triangulation) on the
tuples of one role, scored against their truth (docs/design.md, "diagnostics").

On the unlabeled role this is the P-GT error; on the labeled role it is the teacher's error
on the people it trained on, on the eval role its error on people nobody trained on. The
spread between them says how far the teacher generalises to new people, which bounds what
its P-GT can teach a single-view model about them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pose3d.data import schema
from pose3d.data.loader import make_eval_loader
from pose3d.data.shards import resolve_shards
from pose3d.geometry.metrics import mpjpe
from pose3d.models import load_model
from pose3d.models.multi_view import read_batch


@torch.no_grad()
def teacher_error(teacher: str | Path | torch.nn.Module, data: str | Path, role: str, *,
                  max_tuples: int | None = None, batch_size: int = 8, device: str = "cpu",
                  sharpen: float = 1.0, flip_test: bool = False, reject_px: float = 0.0
                  ) -> dict:
    """{"role", "tuples", "scored", "mpjpe_mm"} of F_mv's triangulated joints (root-aligned
    MPJPE, mm) on the first `max_tuples` tuples of `role` in `data` that carry a truth
    (joints3d or withheld); tuples whose triangulation fails for a joint are not scored.
    The labelling options are the P-GT stage's (pgt.sharpen, pgt.flip_test, pgt.reject_px).
    `teacher` is F_mv's checkpoint, or the model loaded once for several roles."""
    model = (teacher if isinstance(teacher, torch.nn.Module)
             else load_model(teacher, device, kind="multi_view").model)
    loader = make_eval_loader(resolve_shards(str(data), role), batch_size, rank=0,
                              world_size=1, keep_raw=True)
    errors, residuals, seen = [], [], 0
    for batch in loader:
        if max_tuples is not None and seen >= max_tuples:
            break
        seen += len(batch["raw"])
        out, residual = read_batch(model, batch, device, flip_test=flip_test,
                                   reject_px=reject_px, sharpen=sharpen)
        joints, ok = out["joints3d"].float().cpu().numpy(), out["valid3d"].all(dim=1).cpu()
        for raw, pred, good, res in zip(batch["raw"], joints, ok.tolist(), residual):
            truth = schema.raw_truth(raw)
            if good and truth is not None and np.isfinite(pred).all():
                errors.append(float(mpjpe(pred[None], truth[None])[0]))
                residuals.append(res)
    return {"role": role, "tuples": seen, "scored": len(errors),
            "mpjpe_mm": float(np.mean(errors)) if errors else None,
            "by_residual": residual_split(np.array(residuals), np.array(errors))}


def residual_split(residuals: np.ndarray, errors: np.ndarray,
                   keep: tuple[float, ...] = (0.9, 0.8, 0.7)) -> list[dict]:
    """What leaving out the tuples whose views disagree most would do: for each kept share,
    the residual threshold (px) and the MPJPE (mm) of the tuples kept and of those left
    out (pgt.max_residual_px is that threshold)."""
    rows = []
    for share in keep if len(errors) >= 10 else ():
        px = float(np.quantile(residuals, share))
        kept = residuals <= px
        rows.append({"keep": share, "max_residual_px": px,
                     "mpjpe_kept_mm": float(errors[kept].mean()),
                     "mpjpe_left_out_mm": float(errors[~kept].mean()) if (~kept).any()
                     else None})
    return rows
