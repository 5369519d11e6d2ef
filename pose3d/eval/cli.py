"""`pose3d eval`: metrics tables and figures for one or more single-view checkpoints.

    pose3d eval --data data/synthetic --checkpoint Base=runs/x/sv_pretrain/checkpoints/latest.pt \
        --checkpoint Ours=runs/x/finetune/checkpoints/latest.pt --out runs/x/eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pose3d.data.draw import save_figure
from pose3d.data.shards import resolve_shards
from pose3d.eval.figures import sample_figure
from pose3d.eval.predict import load_single_view, predict
from pose3d.eval.report import comparison_table, summarize, write_report


def evaluate_checkpoints(checkpoints: dict[str, str], data: str, out_dir: str | Path, *,
                         role: str = "eval", figures: int = 4, batch_size: int = 8,
                         device: str = "cpu", wandb_mode: str = "disabled",
                         progress: bool = True) -> dict[str, dict]:
    """Evaluate each named checkpoint on the `role` shards of `data`; write report.json,
    report.md, predictions_<name>.npz and figures/<name>_<i>.png under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = resolve_shards(data, role)
    summaries, pictures = {}, []
    for name, path in checkpoints.items():
        model, cfg = load_single_view(path, device)
        preds, kept = predict(model, shards, cfg.data.image_size, batch_size, device,
                              keep_images=figures, progress=progress)
        preds.save(out / f"predictions_{name}.npz")
        summaries[name] = summarize(preds)
        by_key = {k: i for i, k in enumerate(preds.key)}
        for i, item in enumerate(kept):
            j = by_key[item["key"]]
            fig = sample_figure(item["image"], item["pred2d"], preds.pred[j], preds.gt[j],
                                title=f"{name}: {item['key']}")
            pictures.append((name, save_figure(fig, out / "figures" / f"{name}_{i}.png")))
    paths = write_report(summaries, out)
    _log_wandb(summaries, pictures, out, wandb_mode)
    return {"summaries": summaries, "report": paths,
            "figures": [str(p) for _, p in pictures]}


def _log_wandb(summaries: dict, pictures: list, out: Path, mode: str) -> None:
    if mode == "disabled":
        return
    import wandb  # takes seconds to import: only a run that logs to W&B pays for it

    run = wandb.init(project="pose3d", job_type="eval", dir=str(out), mode=mode)
    table = wandb.Table(columns=["model", "camera", "mpjpe", "pa_mpjpe"])
    for name, s in summaries.items():
        for cam, row in s["camera"].items():
            table.add_data(name, cam, row["mpjpe"], row["pa_mpjpe"])
    run.log({"eval/table": table,
             **{f"eval/{name}/mpjpe": s["camera"]["all"]["mpjpe"] for name, s in
                summaries.items()},
             "eval/figures": [wandb.Image(str(p), caption=n) for n, p in pictures]})
    run.finish()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (with manifest.json)")
    parser.add_argument("--role", default="eval", help="which role's shards to evaluate on")
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                        help="a single-view checkpoint to evaluate (repeat to compare)")
    parser.add_argument("--out", required=True, help="folder for the report and figures")
    parser.add_argument("--figures", type=int, default=4, help="figures per checkpoint")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--wandb", default="disabled", choices=["online", "offline", "disabled"])


def parse_checkpoints(items: list[str]) -> dict[str, str]:
    """['Base=a.pt', 'b.pt'] -> {'Base': 'a.pt', 'b': 'b.pt'}; files must exist."""
    out = {}
    for item in items:
        name, _, path = item.rpartition("=")
        name = name or Path(path).stem
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        out[name] = path
    return out


def main(args: argparse.Namespace) -> int:
    result = evaluate_checkpoints(parse_checkpoints(args.checkpoint), args.data, args.out,
                                  role=args.role, figures=args.figures,
                                  batch_size=args.batch_size, device=args.device,
                                  wandb_mode=args.wandb)
    print(comparison_table(result["summaries"]))
    print(json.dumps({k: str(v) for k, v in result["report"].items()}))
    return 0
