"""`pose3d eval`: metrics tables and figures for one or more single-view checkpoints.

    pose3d eval --data data/synthetic --checkpoint Base=runs/x/sv_pretrain/checkpoints/latest.pt \
        --checkpoint Ours=runs/x/finetune/checkpoints/latest.pt --out runs/x/eval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from pose3d.cliargs import add_threads, add_wandb, check_output_names, split_checkpoint
from pose3d.data.draw import save_figure
from pose3d.data.loader import iterate_samples
from pose3d.data.shards import load_manifest, resolve_shards
from pose3d.data.staging import check_writable
from pose3d.device import resolve_device
from pose3d.eval.figures import sample_figure
from pose3d.eval.predict import load_single_view, predict
from pose3d.eval.report import comparison_table, summarize, write_report
from pose3d.models import CheckpointError
from pose3d.out_folder import check_ours, claim


class EvalInputError(ValueError):
    """Bad input to `pose3d eval` (one line, found before anything is written)."""


def check_inputs(checkpoints: dict[str, str], data: str, out_dir: str | Path, *, role: str,
                 figures: int, batch_size: int, device: str
                 ) -> tuple[dict[str, tuple[torch.nn.Module, int]], list[str]]:
    """Everything `evaluate_checkpoints` needs, checked before it writes anything: the
    models (single-view checkpoints, loaded, with their input size in px), the role's
    shards (with ground truth, of the image size the checkpoints were trained on), the
    options, and an --out that can be a folder. Raises EvalInputError, FileNotFoundError
    or CheckpointError, each one line."""
    check_output_names(list(checkpoints), "checkpoint name")  # they name files under --out
    if batch_size < 1:
        raise EvalInputError(f"--batch-size must be >= 1, got {batch_size}")
    if figures < 0:
        raise EvalInputError(f"--figures must be >= 0, got {figures}")
    _check_device(device)
    _check_out(Path(out_dir))
    if not Path(data).is_dir():
        raise FileNotFoundError(f"--data: no such dataset folder {data}")
    shards = resolve_shards(data, role)
    size = load_manifest(data).get("image_size")
    if not _has_ground_truth(shards):
        raise EvalInputError(f"the {role!r} shards of {data} hold no 3D ground truth (an "
                             f"unlabeled role?); evaluate on a role with joints3d, e.g. eval")
    models = {}
    for name, path in checkpoints.items():
        model, cfg = load_single_view(path, device)
        trained = OmegaConf.select(cfg, "data.image_size")
        if size is not None and trained is not None and int(trained) != int(size):
            raise EvalInputError(f"checkpoint {name}={path} was trained on {trained} px images "
                                 f"but {data} holds {size} px images")
        if trained is None and size is None:
            raise EvalInputError(f"neither {path} nor {data}/manifest.json says the image size")
        models[name] = (model, int(trained if trained is not None else size))
    return models, shards


def _check_device(device: str) -> None:
    try:
        resolve_device(device)
    except ValueError as exc:
        raise EvalInputError(f"--{exc}; use --device cpu") from None


def _check_out(out: Path, what: str = "--out") -> None:
    """--out must be (or become) a writable folder, absent, empty or an earlier
    evaluation's (pose3d.out_folder); nothing is created here."""
    try:
        check_writable(out, what)
        if what == "--out":
            check_ours(out, "eval", what)
    except (PermissionError, FileExistsError) as exc:
        raise EvalInputError(str(exc)) from None


def _has_ground_truth(shards: list[str]) -> bool:
    """Whether the first readable sample of the shards carries joints3d."""
    for sample in iterate_samples(shards, on_error=lambda message: None):
        return sample.joints3d is not None
    return True  # nothing readable: the loader reports that, naming the shards


def evaluate_checkpoints(checkpoints: dict[str, str], data: str, out_dir: str | Path, *,
                         role: str = "eval", figures: int = 4, batch_size: int = 8,
                         device: str = "cpu", wandb_mode: str = "disabled",
                         progress: bool = True) -> dict[str, dict]:
    """Evaluate each named checkpoint on the `role` shards of `data`; write report.json,
    report.md, predictions_<name>.npz and figures/<name>_<i>.png under `out_dir`. Bad input
    fails (check_inputs) before `out_dir` is created; an `out_dir` that holds files an
    evaluation did not write (no .pose3d-eval marker) is bad input. Each model's summary
    holds `skipped`: the samples the reader skipped (counts by reason, the first few
    named)."""
    models, shards = check_inputs(checkpoints, data, out_dir, role=role, figures=figures,
                                  batch_size=batch_size, device=device)
    if wandb_mode != "disabled":  # W&B writes under out/wandb: refused now, not after the work
        _check_out(Path(out_dir) / "wandb", "W&B folder")
    out = claim(out_dir, "eval")
    summaries, pictures = {}, []
    for name, (model, image_size) in models.items():
        preds, kept, skipped = predict(model, shards, image_size, batch_size, device,
                                       keep_images=figures, progress=progress)
        preds.save(out / f"predictions_{name}.npz")
        summaries[name] = {**summarize(preds), "skipped": skipped}
        if skipped["counts"]:
            print(f"eval {name}: skipped {skipped['counts']} (e.g. {skipped['examples'][0]})",
                  file=sys.stderr)
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
             **{f"eval/{name}/skipped_{reason}": n for name, s in summaries.items()
                for reason, n in s["skipped"]["counts"].items()},
             "eval/figures": [wandb.Image(str(p), caption=n) for n, p in pictures]})
    run.finish()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="a pose3d dataset folder (with manifest.json), as `pose3d synth "
                             "--out` or `pose3d convert --out` wrote it (the configs' data.root)")
    parser.add_argument("--role", default="eval", help="which role's shards to evaluate on")
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                        help="a single-view checkpoint to evaluate, PATH or NAME=PATH (NAME: its "
                             "column in the report; default: the file's stem); repeat to "
                             "compare")
    parser.add_argument("--out", required=True, help="folder for the report and figures")
    parser.add_argument("--figures", type=int, default=4, help="figures per checkpoint")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_threads(parser)
    add_wandb(parser)


def parse_checkpoints(items: list[str]) -> dict[str, str]:
    """['Base=a.pt', 'b.pt'] -> {'Base': 'a.pt', 'b': 'b.pt'}; files must exist, names must
    differ (they name the report's columns and output files)."""
    out = {}
    for item in items:
        name, path = split_checkpoint(item)
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        if name in out:
            raise EvalInputError(f"two checkpoints are named {name!r} ({out[name]} and {path});"
                                 f" name them: --checkpoint NAME=PATH")
        out[name] = path
    return out


def main(args: argparse.Namespace) -> int:
    try:
        result = evaluate_checkpoints(parse_checkpoints(args.checkpoint), args.data, args.out,
                                      role=args.role, figures=args.figures,
                                      batch_size=args.batch_size, device=args.device,
                                      wandb_mode=args.wandb)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:  # EvalInputError too
        print(f"pose3d eval: error: {exc}", file=sys.stderr)
        return 2
    print(comparison_table(result["summaries"]))
    print(json.dumps({k: str(v) for k, v in result["report"].items()}))
    return 0
