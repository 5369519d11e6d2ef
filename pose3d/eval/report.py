"""Evaluation reports: per-camera / per-action / overall tables in the paper's layout.

The input of a report is a `Predictions` record per model: world-mm predictions and GT for
every (tuple, view) pair with its camera, action and subject labels.
"""

from __future__ import annotations

import json
from pathlib import Path

from pose3d.eval.agreement import agreement_table, tuple_groups, view_agreement
from pose3d.eval.predictions import Predictions
from pose3d.geometry.metrics import aggregate, evaluate


def summarize(preds: Predictions) -> dict:
    """Metrics per camera, per action, per subject and overall ('all'); with tuples seen by
    several views also 'views': how those views agree (pose3d.eval.agreement)."""
    per_pose = evaluate(preds.pred, preds.gt)
    summary = {
        "camera": aggregate(per_pose, preds.camera),
        "action": aggregate(per_pose, preds.action),
        "subject": aggregate(per_pose, preds.subject),
    }
    if tuple_groups(preds.key):
        summary["views"] = view_agreement(preds)
    return summary


def comparison_table(summaries: dict[str, dict], by: str = "camera",
                     metrics: tuple[str, str] = ("mpjpe", "pa_mpjpe")) -> str:
    """Markdown table like the paper's: rows = cameras (or actions), then 'mean';
    columns = models, each cell 'MPJPE / PA-MPJPE' in mm."""
    names = list(summaries)
    groups = sorted({g for s in summaries.values() for g in s[by] if g != "all"})
    header = f"| {by} | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for g in [*groups, "all"]:
        cells = []
        for name in names:
            row = summaries[name][by].get(g)
            cells.append("-" if row is None else " / ".join(f"{row[m]:.2f}" for m in metrics))
        label = "mean" if g == "all" else g
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(summaries: dict[str, dict], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json (every metric, every grouping) and report.md (tables)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(summaries, indent=2))
    parts = ["## MPJPE / PA-MPJPE (mm) per camera", comparison_table(summaries, "camera"),
             "", "## MPJPE / PA-MPJPE (mm) per action", comparison_table(summaries, "action"),
             "", "## 3DPCK@150mm / AUC per camera",
             comparison_table(summaries, "camera", ("pck3d", "auc")),
             "", "## N-MPJPE (mm) per camera",
             comparison_table(summaries, "camera", ("n_mpjpe",))]
    if any("views" in s for s in summaries.values()):
        parts += ["", "## Agreement between the views of a tuple (root-aligned)",
                  agreement_table(summaries)]
    md_path.write_text("\n".join(parts) + "\n")
    return {"json": json_path, "markdown": md_path}
