"""What limits the gain of the unlabeled people, in numbers (docs/design.md, "diagnostics").

Two measurements beside every demo:
- the gap new people can close: Base's error on held-out clips of the labeled people (the
  same people, new motions and rooms) against its error on the eval people. A small gap
  says the labeled people already cover the eval people, and more people cannot help;
- the teacher per role: F_mv's triangulation error on the labeled people (its own), the
  unlabeled people (the P-GT error), the held-out clips of the labeled people and the eval
  people.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pose3d.data.studio import StudioConfig
from pose3d.data.synth import config_record, synthesize
from pose3d.eval.cli import evaluate_checkpoints
from pose3d.eval.teacher import teacher_error
from pose3d.models import load_model
from pose3d.train.reuse import check_dataset

HELDOUT = "data_heldout"  # held-out clips of the labeled people, as an eval role
MAX_TEACHER_TUPLES = 800  # per role: the teacher's error settles long before that


def heldout_config(studio: StudioConfig) -> StudioConfig:
    """New clips of the labeled people: the same people (body, look and rig depend on the
    subject alone), new motions and rooms (they depend on the role), one clip per action."""
    return dataclasses.replace(studio, roles={"eval": tuple(studio.roles["labeled"])},
                               clips_per_action=1, clips_per_role={})


def render_heldout(out: Path, studio: StudioConfig, workers: int) -> Path:
    """out/HELDOUT, rendered once: reused when its manifest records the same studio, else
    SettingsMismatch (pose3d.train.reuse.check_dataset: checked by the demo before any
    work)."""
    data, config = out / HELDOUT, heldout_config(studio)
    check_dataset(data, config_record(config))
    if not (data / "manifest.json").is_file():
        synthesize(data, config, workers=workers, progress=False)
    return data


def diagnose(out: Path, root: Path, data: Path, studio: StudioConfig, base_eval_mm: float,
             pgt_report: dict, *, workers: int = 2, batch_size: int = 8,
             device: str = "cpu") -> dict:
    """{"base": {"eval_mm", "heldout_labeled_mm", "gap_mm"}, "teacher": {role: mm},
    "unlabeled_by_residual": teacher.residual_split rows} (root-aligned MPJPE, mm); also
    written to out/diagnostics.json."""
    heldout = render_heldout(out, studio, workers)
    base = evaluate_checkpoints({"Base": str(root / "sv_pretrain/checkpoints/latest.pt")},
                                str(heldout), out / "eval_heldout", figures=0,
                                batch_size=batch_size, device=device, progress=False)
    heldout_mm = base["summaries"]["Base"]["camera"]["all"]["mpjpe"]
    options = {k: pgt_report.get(k, d) for k, d in
               (("sharpen", 1.0), ("flip_test", False), ("reject_px", 0.0))}
    mv = load_model(root / "mv_pretrain" / "checkpoints" / "latest.pt", device,
                    kind="multi_view").model  # once for the four roles
    runs = {name: teacher_error(mv, folder, role, max_tuples=MAX_TEACHER_TUPLES,
                                batch_size=batch_size, device=device, **options)
            for name, folder, role in (("labeled", data, "labeled"),
                                       ("heldout_labeled", heldout, "eval"),
                                       ("unlabeled", data, "unlabeled"),
                                       ("eval", data, "eval"))}
    teacher = {name: run["mpjpe_mm"] for name, run in runs.items()}
    teacher["unlabeled"] = pgt_report.get("mpjpe_mm")  # every P-GT tuple, not a sample
    result = {"base": {"eval_mm": base_eval_mm, "heldout_labeled_mm": heldout_mm,
                       "gap_mm": base_eval_mm - heldout_mm},
              "teacher": teacher,
              # would leaving out the unlabeled tuples whose views disagree help?
              "unlabeled_by_residual": runs["unlabeled"]["by_residual"]}
    (out / "diagnostics.json").write_text(json.dumps(result, indent=1))
    return result


def diagnostics_lines(diag: dict) -> list[str]:
    """The demo's printout of diagnose()."""
    b, t = diag["base"], diag["teacher"]
    fmt = {k: "n/a" if v is None else f"{v:.2f}" for k, v in t.items()}
    return [f"Base: {b['heldout_labeled_mm']:.2f} mm on held-out clips of the labeled people, "
            f"{b['eval_mm']:.2f} mm on the eval people: a gap of {b['gap_mm']:+.2f} mm that "
            f"new people can close",
            f"teacher (F_mv) MPJPE by role (mm): labeled {fmt['labeled']}, held-out labeled "
            f"{fmt['heldout_labeled']}, unlabeled (P-GT) {fmt['unlabeled']}, eval "
            f"{fmt['eval']}"] + [
        f"P-GT keeping the {r['keep']:.0%} of tuples whose views agree best (residual <= "
        f"{r['max_residual_px']:.2f} px): {r['mpjpe_kept_mm']:.2f} mm kept, "
        f"{r['mpjpe_left_out_mm']:.2f} mm left out" for r in diag["unlabeled_by_residual"]
        if r["mpjpe_left_out_mm"] is not None]
