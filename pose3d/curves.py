"""Learning curves: the eval MPJPE of a run's step checkpoints (docs/demo.md, "learning curves").

Base over single-view pretraining and every fine-tuning arm after it, each checkpoint on the
eval tuples (the last point of a curve is the run's evaluation, taken from it where the
caller has it). They answer the two questions a paired difference cannot: was Base trained
to its plateau, and does an arm gain over GT-only because of what it reads or because it
trains longer.
"""

from __future__ import annotations

import json
from pathlib import Path

from pose3d.data.shards import resolve_shards
from pose3d.eval.predict import load_single_view, predict
from pose3d.eval.report import summarize
from pose3d.train.checkpoint import LATEST, step_checkpoints


def curve_overrides(steps: int, points: int) -> list[str]:
    """Config overrides that keep a step checkpoint every 1/`points` of a `steps`-step run."""
    return [f"run.ckpt_every_steps={max(1, steps // points)}",
            f"run.keep_checkpoints={points + 1}"]


def run_curve(run_dir: Path, data: Path, *, batch_size: int = 8, device: str = "cpu",
              role: str = "eval", latest_mpjpe: float | None = None) -> list[dict]:
    """[{"step", "mpjpe"}] (mm, root-aligned) of every step checkpoint of `run_dir`, oldest
    first, on the `role` tuples of `data`. `latest_mpjpe`: the caller's evaluation of
    checkpoints/latest.pt on the same tuples, taken for that checkpoint instead of
    evaluating it a second time (the same figure: tests/test_experiment_runs.py)."""
    shards = resolve_shards(str(data), role)
    latest = (run_dir / "checkpoints" / LATEST).resolve()
    points = []
    for path in step_checkpoints(run_dir / "checkpoints"):
        step = int(path.stem.split("_")[1])
        if latest_mpjpe is not None and path.resolve() == latest:
            points.append({"step": step, "mpjpe": latest_mpjpe})
            continue
        model, cfg = load_single_view(path, device)
        preds, _, _ = predict(model, shards, int(cfg.data.image_size), batch_size, device,
                              progress=False)
        points.append({"step": step, "mpjpe": summarize(preds)["camera"]["all"]["mpjpe"]})
    return points


def learning_curves(runs: dict[str, Path], data: Path, out: Path, *, batch_size: int = 8,
                    device: str = "cpu", final: dict[str, float] | None = None
                    ) -> dict[str, list[dict]]:
    """{name: run_curve} of each run (Base first, then the arms), cached in out/curves.json
    per run (a rerun evaluates only runs whose checkpoints changed); writes curves.png.
    `final[name]`: that run's latest.pt, evaluated by the caller just before (its last
    point, not evaluated again)."""
    final = final or {}
    cache_file = out / "curves.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    result = {}
    for name, run_dir in runs.items():
        stamp = [[p.name, p.stat().st_mtime] for p in step_checkpoints(run_dir / "checkpoints")]
        entry = cache.get(name)
        if not entry or entry.get("stamp") != stamp:
            entry = {"stamp": stamp, "points": run_curve(run_dir, data, batch_size=batch_size,
                                                         device=device,
                                                         latest_mpjpe=final.get(name))}
        cache[name] = entry
        result[name] = entry["points"]
    out.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps(cache, indent=1))
    curves_figure(result, out / "curves.png")
    return result


def curves_figure(curves: dict[str, list[dict]], path: Path, base: str = "Base") -> Path:
    """Base's curve over its steps, each arm's continuing from Base's last step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    offset = 0
    if curves.get(base):
        points = curves[base]
        ax.plot([p["step"] for p in points], [p["mpjpe"] for p in points], "o-", color="#333333",
                label=f"{base} (sv_pretrain)")
        offset = points[-1]["step"]
        last = points[-1]["mpjpe"]
        ax.axhline(last * 0.98, color="#9a9a9a", lw=0.8, ls=":", label=f"{base} - 2%")
    for name, points in curves.items():
        if name == base or not points:
            continue
        steps = [offset] * (offset > 0) + [offset + p["step"] for p in points]
        values = ([curves[base][-1]["mpjpe"]] if offset > 0 else []) + [p["mpjpe"] for p in points]
        ax.plot(steps, values, "o-", ms=3, label=name)
    ax.set_xlabel("training step (Base, then fine-tuning)")
    ax.set_ylabel("eval MPJPE (mm)")
    ax.set_title("learning curves", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
