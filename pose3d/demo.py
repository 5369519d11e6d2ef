"""`pose3d demo`: the paper's experiment end to end on the built-in synthetic studio.

synthetic data (procedural motion of people, each with a build and a way of moving of their
own, limbs coloured by side with `--look sides`, the default, or dressed with `--look
clothing`; the Human3.6M rig) -> multi-view pretraining of the teacher on the
labeled people -> P-GT on the unlabeled people -> single-view pretraining (Base) -> four
fine-tunings of Base: GT-only (the labeled GT alone, the control), L1-only (GT + P-GT,
λ2 = 0), Oracle (GT + the unlabeled people's withheld truth in place of P-GT, the upper
bound) and Ours (GT + P-GT with eq. 9) -> evaluation of the five single-view models on the
eval people, a table in the paper's layout, learning curves and the diagnostics of
pose3d.diagnostics (Base on held-out clips of the labeled people, the teacher per role).

Who is labeled is `--protocol` (PROTOCOLS): s1 (the default: S1 labeled; S5-S8 unlabeled)
or h36m (the paper's split: S1, S5, S6 / S7, S8); eval S9, S11 in both. With `--seeds K`
the fine-tuning is the paired experiment of `pose3d experiment` instead: K seeds of every
arm (pose3d.experiment.arms), means and 95% intervals, paired differences.

The default settings are small enough for a 2-core CPU; `--full` uses the paper's model
sizes (ResNet-50, 256 px, 64^3 heatmaps) for one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from pose3d import experiment
from pose3d.cliargs import add_wandb, deprecated_alias
from pose3d.curves import curve_overrides, learning_curves
from pose3d.data.shards import MANIFEST
from pose3d.data.staging import check_writable
from pose3d.data.studio import DEFAULT_ROLES, StudioConfig
from pose3d.data.synth import config_record, synthesize
from pose3d.diagnostics import HELDOUT, diagnose, diagnostics_lines, heldout_config
from pose3d.eval.cli import evaluate_checkpoints
from pose3d.eval.report import comparison_table
from pose3d.experiment import arms, check_reuse, markdown, pick_arms, run_experiment
from pose3d.out_folder import check_ours, claim
from pose3d.threads import available_cores, launcher_env
from pose3d.train.cli import run
from pose3d.train.config import load_config
from pose3d.train.pgt import check_pgt_root
from pose3d.train.reuse import check_dataset, check_run

# The CPU demo: small images and a ResNet-18; every stage a few minutes on 2 cores.
SMALL = {
    # 2 clips per action for eval; the roles that train get more ("clips"): the teacher's
    # error on subjects it never saw was twice that on its own (docs/results.md, "where the
    # teacher's error comes from"), and more clips cost seconds of rendering and labelling.
    "studio": dict(image_size=96, clips_per_action=2, frames_per_clip=100, frame_step=5),
    # how people look unless --look says otherwise: 'sides' (limbs coloured by side). Dressed
    # people ('clothing') defeat this preset's teacher, trained from scratch on 96 px views
    # of the labeled people: P-GT 112.6 mm under the paper's split, 151.7 with colour
    # augmentation (docs/results.md, "dressed people")
    "look": "sides",
    # clips per action of each role, per protocol (PROTOCOLS): the same number of labeled
    # tuples in both (3,240), from three people or from one
    "clips": {"h36m": {"labeled": 6, "unlabeled": 6}, "s1": {"labeled": 18, "unlabeled": 3}},
    "overrides": [
        "data.image_size=96", "data.num_workers=1", "data.augment=false",
        # bf16 on CPUs that compute it natively: the same P-GT, 1.4x faster
        "run.amp_cpu=true",
        "model.sv.backbone=resnet18", "model.sv.deconv_channels=64", "model.sv.num_deconv=3",
        "model.sv.depth_bins=24",
        "model.mv.backbone=resnet18", "model.mv.deconv_channels=64", "model.mv.num_deconv=3",
        "optim.mv_pretrain.epochs=1", "optim.mv_pretrain.batch_size=4",
        "optim.mv_pretrain.lr=1e-3",
        "optim.sv_pretrain.epochs=1", "optim.sv_pretrain.batch_size=4",
        "optim.sv_pretrain.lr=1e-3",
        "optim.finetune.epochs=1", "optim.finetune.batch_size=4", "optim.finetune.lr=3e-4",
        "optim.pgt.batch_size=8",
        # label from 2x the teacher's logits: its heatmaps' far tail pulls the plain
        # soft-argmax towards the centre (P-GT 30.26 -> 28.92 mm, docs/results.md)
        "pgt.sharpen=2.0",
        # mv_pretrain: the triangulation error is in mm, the 2D error in heatmap pixels; a
        # backbone that starts from scratch learns far faster from the 2D term.
        "loss.lambda_3d=0.01", "loss.lambda_2d=1.0",
        # the heatmaps' mass at the joint, not only its mean (docs/design.md, "Pretraining
        # F_mv"): at 900 steps P-GT 78.3 / 57.2 / 53.3 mm at 0 / 1 / 3 (docs/results.md)
        "loss.lambda_heatmap=3.0",
        "run.ckpt_every_steps=100", "run.log_every_steps=10", "run.image_every_steps=200",
        "run.keep_checkpoints=1",
    ],
    # the teacher: P-GT is only as good as F_mv's 2D joints, and Base starts from F_mv's
    # trunk (docs/results.md, "where the teacher's error comes from"). Base: to its plateau,
    # so that a fine-tuning's gain is not more training (GT-only - Base: -0.22 mm, 0.4%, at
    # 1,000 steps; docs/results.md, "the GT-only control"); the fine-tunings: 200 steps each.
    "batches": {"mv_pretrain": 2500, "sv_pretrain": 1000, "finetune": 200},
    # the teacher sees each labeled tuple about twice and must read subjects it never saw:
    # it trains on jittered views; the single-view stages see each tuple at most once
    "stage_overrides": {"mv_pretrain": ["data.augment=true"]},
    "lambda_mv": 1e-4, "lambda_bone": 4e-3, "workers": 2, "eval_batch_size": 8,
}
# The paper's model sizes for one GPU, sized for about 4 minutes in all on one H100 with
# --seeds 3 and every arm. ResNet-50 at 256 px trains at roughly 800-1,000 images/s in bf16,
# so mv_pretrain (1,600 steps of 32 images, 51k images: the CPU demo's teacher saw 29k at
# 96 px) takes about a minute, sv_pretrain half a minute, each of the 15 fine-tunings
# (3.2k images) a few seconds plus its start; 5,670 tuples render in about half a minute on
# 16 cores and each evaluation reads 6.5k images. At 256 px one pixel is 2.7 times fewer
# millimetres than at 96 px, and the triangulation turns each pixel of 2D error into about
# 14 mm (37 mm at 96 px), so the teacher should land near 20-30 mm while the single-view
# model stays dominated by its depth error.
FULL = {
    "studio": dict(image_size=256, clips_per_action=3, frames_per_clip=150, frame_step=5),
    "clips": {"h36m": {}, "s1": {"labeled": 9, "unlabeled": 2}},
    "overrides": [
        "data.image_size=256", "data.num_workers=8", "data.augment=false",
        "optim.mv_pretrain.epochs=1", "optim.mv_pretrain.batch_size=8",
        "optim.mv_pretrain.lr=1e-3",
        "optim.sv_pretrain.epochs=1", "optim.sv_pretrain.batch_size=8",
        "optim.sv_pretrain.lr=1e-3",
        "optim.finetune.epochs=1", "optim.finetune.batch_size=8", "optim.finetune.lr=3e-4",
        "optim.pgt.batch_size=32",
        "loss.lambda_3d=0.01", "loss.lambda_2d=1.0", "loss.lambda_heatmap=3.0",
        "run.ckpt_every_steps=500", "run.log_every_steps=20", "run.image_every_steps=1000",
        "run.keep_checkpoints=1",
    ],
    # Base and the fine-tunings twice as long as before the GT-only control, like the CPU
    # preset's (not yet measured on a GPU: docs/gpu-run.md)
    "batches": {"mv_pretrain": 1600, "sv_pretrain": 1600, "finetune": 200},
    # λ2 and the bone weight scale with the depth bins D (one voxel of depth is S / D mm)
    "lambda_mv": 2.5e-4, "lambda_bone": 1e-2, "workers": available_cores(),
    "eval_batch_size": 64,
    # the CPU teacher's jittered views are measured on the CPU only: not inherited here
    "stage_overrides": {},
}
PRESETS = {"small": SMALL, "full": FULL}
# Who is labeled (docs/demo.md, "the regime"). h36m: the paper's split, three labeled
# people. s1: the field's "S1 only" protocol, one labeled person and four unlabeled ones,
# the product's use case of a small labeled set beside video of the people the model will
# meet. The eval subjects are the same in both.
PROTOCOLS = {
    "h36m": dict(DEFAULT_ROLES),
    "s1": {"labeled": ("S1",), "unlabeled": ("S5", "S6", "S7", "S8"), "eval": ("S9", "S11")},
}
# The single-seed demo's fine-tunings: arm -> run folder (a column of the table each)
FINETUNE_DIRS = {"GT-only": "finetune_gt", "L1-only": "finetune_l1",
                 "Oracle": "finetune_oracle", "Ours": "finetune_ours"}
# Step checkpoints kept for the learning curves (pose3d.curves): points per stage; a
# fine-tuning keeps as many as the paired experiment's first seed
CURVE_POINTS = {"sv_pretrain": 8, "finetune": experiment.CURVE_POINTS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="folder for data, runs and report")
    parser.add_argument("--full", action="store_true", help="the paper's sizes (for GPUs)")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes per training stage (torchrun) ")
    parser.add_argument("--lambda-mv", type=float, default=None,
                        help="λ2 of eq. 10 for 'Ours' (L_mv is in mm, L_pose in voxels; "
                             "default: 1e-4, with --full 2.5e-4)")
    parser.add_argument("--lambda-bone", type=float, default=None,
                        help="weight of the bone-length term (mm) in the Ours+bone arm "
                             "(default: 4e-3, with --full 1e-2)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="K > 1: the paired experiment, K fine-tunings per arm")
    parser.add_argument("--arms", nargs="*", default=None,
                        help=f"with --seeds K > 1: which fine-tuning arms (default: all of "
                             f"{', '.join(arms())})")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every stage's number of steps (e.g. 0.02 for a smoke run)")
    parser.add_argument("--finetune-steps", type=int, default=None, metavar="N",
                        help="steps of each fine-tuning (default: the preset's, 200 on the "
                             "CPU, times --steps-scale; one pass over labeled + P-GT is "
                             "about 1,350: docs/demo.md)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes rendering the data (default: 2, with --full every core)")
    add_wandb(parser)
    first = parser.add_argument("--first-seed", type=int, default=0,
                                help="seed of the data and of every stage; with --seeds K the "
                                     "fine-tunings use seeds FIRST_SEED .. FIRST_SEED+K-1")
    deprecated_alias(parser, "--seed", first)
    parser.add_argument("--no-curves", action="store_true",
                        help="skip the learning curves (each step checkpoint evaluated on the "
                             "eval tuples: minutes with --seeds K)")
    parser.add_argument("--look", default=None, choices=("sides", "clothing"),
                        help="how the studio's people look: sides (limbs coloured by side, "
                             "the default) or clothing (dressed, a face and shoes: harder; "
                             "docs/demo.md)")
    parser.add_argument("--protocol", default="s1", choices=sorted(PROTOCOLS),
                        help="who is labeled: s1 = one labeled subject (S1) and four "
                             "unlabeled (S5-S8); h36m = the paper's S1,S5,S6 / S7,S8")


def preset_of(args: argparse.Namespace) -> dict:
    """The chosen preset; keys it lacks come from SMALL."""
    return {**SMALL, **PRESETS["full" if args.full else "small"]}


def studio_config(args: argparse.Namespace) -> StudioConfig:
    """The synthetic studio of this preset and protocol."""
    preset = preset_of(args)
    return StudioConfig(seed=args.first_seed, roles=PROTOCOLS[args.protocol],
                        clips_per_role=preset["clips"][args.protocol],
                        look=getattr(args, "look", None) or preset["look"], **preset["studio"])


def demo_arms(args: argparse.Namespace) -> dict[str, list[str]]:
    """The fine-tuning arms (pose3d.experiment.arms) with this preset's weights."""
    preset = preset_of(args)
    lambda_mv = preset["lambda_mv"] if args.lambda_mv is None else args.lambda_mv
    lambda_bone = preset["lambda_bone"] if args.lambda_bone is None else args.lambda_bone
    return arms(lambda_mv, lambda_bone)


def stage_plan(args: argparse.Namespace, root: Path, data: Path) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each stage in the order they run."""
    preset = preset_of(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # A short run ends far from a minimum at a constant lr: decaying it to 0 makes the last
    # checkpoint (the one evaluated) much less dependent on the seed.
    common = [*preset["overrides"], "optim.lr_schedule=cosine", f"data.root={data}",
              f"run.root={root}", f"run.seed={args.first_seed}", f"run.wandb={args.wandb}",
              f"run.device={device}"]
    steps = {k: max(2, int(v * args.steps_scale)) for k, v in preset["batches"].items()}
    steps["finetune"] = paired_steps(args)
    extra = preset.get("stage_overrides", {})
    sv = f"{root}/sv_pretrain/checkpoints/latest.pt"
    mv = f"{root}/mv_pretrain/checkpoints/latest.pt"
    return [
        ("mv_pretrain", [*common, "stage=mv_pretrain", *extra.get("mv_pretrain", []),
                         f"data.batches_per_epoch={steps['mv_pretrain']}"]),
        ("pgt", [*common, "stage=pgt"]),
        # Base starts from F_mv's trunk and 2D head (SingleViewModel.init_from_multi_view):
        # without it, a from-scratch single-view model is still placing joints in 2D when
        # the CPU budget ends, and a consistency loss has no good 2D view to learn depth from.
        ("sv_pretrain", [*common, "stage=sv_pretrain", f"model.sv_init_from_mv={mv}",
                         f"data.batches_per_epoch={steps['sv_pretrain']}",
                         *curve_overrides(steps["sv_pretrain"], CURVE_POINTS["sv_pretrain"])]),
    ] + [(name, [*common, "stage=finetune", *overrides, f"model.sv.weights_path={sv}",
                 f"run.out_dir={root}/{FINETUNE_DIRS[name]}",
                 f"data.batches_per_epoch={steps['finetune']}",
                 *curve_overrides(steps["finetune"], CURVE_POINTS["finetune"])])
         for name, overrides in demo_arms(args).items()
         if name in FINETUNE_DIRS and args.seeds <= 1]


def paired_steps(args: argparse.Namespace) -> int:
    """Steps of every fine-tuning (one seed or the paired experiment's): --finetune-steps,
    else the preset's times --steps-scale."""
    if getattr(args, "finetune_steps", None) is not None:
        return args.finetune_steps
    return max(2, int(preset_of(args)["batches"]["finetune"] * args.steps_scale))


def paired_seeds(args: argparse.Namespace) -> list[int]:
    """The seeds of the paired experiment's fine-tunings."""
    return list(range(args.first_seed, args.first_seed + args.seeds))


def check_rerun(args: argparse.Namespace, out: Path, chosen: dict[str, list[str]]) -> None:
    """Before any work: a rerun over `out` reuses its studio and runs only when they were
    made with the settings asked for (pose3d.train.reuse), else SettingsMismatch."""
    data, root = out / "data", out / "runs"
    check_dataset(data, config_record(studio_config(args)))
    check_dataset(out / HELDOUT, config_record(heldout_config(studio_config(args))))
    for _, overrides in stage_plan(args, root, data):
        check_run(load_config(None, overrides))
    if args.seeds > 1 and (root / "sv_pretrain" / "config.yaml").is_file():
        check_reuse(root, out / "experiment", chosen, paired_seeds(args), paired_steps(args))


def check_folders(args: argparse.Namespace, out: Path, chosen: dict[str, list[str]]) -> None:
    """Before any work: `out` and the evaluation folders in it are absent, empty or written
    by the demo and `pose3d eval` before (pose3d.out_folder); data/ holds nothing or a
    dataset; runs/pgt_shards nothing or an earlier P-GT (pose3d.train.pgt). Else one line."""
    check_ours(out, "demo")
    if args.seeds <= 1:
        evals = [out / "eval"]
    else:
        evals = [out / "experiment" / "eval" / "Base"] + [
            out / "experiment" / "eval" / arm / f"seed{seed}"
            for arm in chosen for seed in paired_seeds(args)]
    for folder in [*evals, out / "eval_heldout"]:  # the last: the diagnostics' (Base)
        check_ours(folder, "eval", "evaluation folder")
    data = out / "data"
    for folder in (data, out / HELDOUT):
        if not (folder / MANIFEST).is_file() and folder.is_dir() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} holds files but no dataset ({MANIFEST}), and the "
                                  f"demo renders a studio there: move them away or choose "
                                  f"another --out")
    for labels in ("pgt_shards", experiment.ORACLE_PGT):
        check_pgt_root(out / "runs" / labels, data)


def run_stage(overrides: list[str], nproc: int) -> None:
    """One stage, in this process or under torchrun with `nproc` workers."""
    if nproc <= 1:
        run(load_config(None, overrides))
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "pose3d.train", *overrides]
    # each worker's share of the cores, set before OpenMP starts (torchrun would set 1)
    subprocess.run(cmd, check=True, env={**os.environ, **launcher_env(nproc)})


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        if args.arms and args.seeds <= 1:
            raise ValueError("--arms chooses among the paired experiment's arms: give --seeds K "
                             "> 1 too (one seed trains L1-only and Ours)")
        if args.finetune_steps is not None and args.finetune_steps < 1:
            raise ValueError(f"--finetune-steps must be at least 1, got {args.finetune_steps}")
        chosen = pick_arms(demo_arms(args), args.arms)  # unknown: an error now, not at the end
        check_writable(out, "demo folder (--out)")
        check_folders(args, out, chosen)
        check_rerun(args, out, chosen)
        claim(out, "demo")
    except (OSError, ValueError) as exc:
        print(f"pose3d demo: error: {exc}", file=sys.stderr)
        return 2
    data, root = out / "data", out / "runs"
    preset = preset_of(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if not (data / "manifest.json").is_file():
        print(f"[demo] rendering the synthetic studio into {data}", flush=True)
        synthesize(data, studio_config(args), workers=args.workers or preset["workers"],
                   preview=4)
    timings["data"] = time.perf_counter() - start
    for label, overrides in stage_plan(args, root, data):
        print(f"[demo] stage {label}", flush=True)
        t0 = time.perf_counter()
        run_stage(overrides, args.nproc)
        if label == "pgt" and args.seeds <= 1:
            experiment.prepare_oracle(root, data, FINETUNE_DIRS)
        timings[label] = time.perf_counter() - t0
    pgt = json.loads((root / "pgt" / "pgt_report.json").read_text())
    if args.seeds > 1:
        return run_paired(args, chosen, root, data, out, pgt, timings, device)
    checkpoints = {"Base": root / "sv_pretrain",
                   **{name: root / folder for name, folder in FINETUNE_DIRS.items()}}
    t0 = time.perf_counter()
    result = evaluate_checkpoints({k: str(v / "checkpoints" / "latest.pt")
                                   for k, v in checkpoints.items()},
                                  str(data), out / "eval", wandb_mode=args.wandb, device=device,
                                  batch_size=preset["eval_batch_size"])
    timings["eval"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    curves = {} if args.no_curves else learning_curves(
        checkpoints, data, out / "eval", device=device, batch_size=preset["eval_batch_size"],
        final={k: s["camera"]["all"]["mpjpe"] for k, s in result["summaries"].items()})
    timings["curves"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    diag = diagnose(out, root, data, studio_config(args),
                    result["summaries"]["Base"]["camera"]["all"]["mpjpe"], pgt,
                    workers=args.workers or preset["workers"],
                    batch_size=preset["eval_batch_size"], device=device)
    timings["diagnostics"] = time.perf_counter() - t0
    print_summary(result, pgt, timings, out, curves, diag)
    return 0


def run_paired(args: argparse.Namespace, chosen: dict[str, list[str]], root: Path, data: Path,
               out: Path, pgt: dict, timings: dict, device: str) -> int:
    """The fine-tuning as `pose3d experiment`: K seeds of every chosen arm, from this Base."""
    steps, seeds = paired_steps(args), paired_seeds(args)
    summary = run_experiment(root, data, out / "experiment", chosen, seeds, steps,
                             [f"run.wandb={args.wandb}", f"run.device={device}"], device)
    timings.update(summary["timings_s"]["runs"], eval=summary["timings_s"]["eval"])
    t0 = time.perf_counter()
    if not args.no_curves:
        experiment.first_seed_curves(root, data, out / "experiment", list(chosen), summary,
                                     device, preset_of(args)["eval_batch_size"])
    timings["curves"] = time.perf_counter() - t0
    base = summary["arms"]["Base"]["all"]["mpjpe"]["mean"]
    t0 = time.perf_counter()
    diag = diagnose(out, root, data, studio_config(args), base, pgt,
                    workers=args.workers or preset_of(args)["workers"],
                    batch_size=preset_of(args)["eval_batch_size"], device=device)
    timings["diagnostics"] = time.perf_counter() - t0
    print(markdown(summary))
    print("\n".join(diagnostics_lines(diag)))
    print(f"\nP-GT MPJPE on the unlabeled tuples: {pgt.get('mpjpe_mm') or float('nan'):.2f} mm "
          f"(Base: {base:.2f} mm single-view)")
    print(f"experiment: {out / 'experiment' / 'experiment.md'}, "
          f"{out / 'experiment' / 'experiment.png'}, {out / 'experiment' / 'curves.png'}")
    _print_times(timings)
    (out / "demo_summary.json").write_text(json.dumps(
        {"mpjpe_mm": {"Base": base, **{a: v["all"]["mpjpe"]["mean"] for a, v in
                                       summary["arms"].items() if a != "Base"}},
         "pgt": pgt, "diagnostics": diag, "teacher_share": summary["teacher_share"],
         "timings_s": timings, "experiment": str(out / "experiment")}, indent=1))
    return 0


def _print_times(timings: dict) -> None:
    print("time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
          + f", total {sum(timings.values()):.0f}")


def print_summary(result: dict, pgt: dict, timings: dict, out: Path,
                  curves: dict[str, list[dict]], diag: dict) -> None:
    summaries = result["summaries"]
    print("\n## MPJPE / PA-MPJPE (mm) on the eval subjects\n")
    print(comparison_table(summaries))
    means = {name: s["camera"]["all"]["mpjpe"] for name, s in summaries.items()}
    print(f"\nP-GT MPJPE on the unlabeled tuples: {pgt.get('mpjpe_mm') or float('nan'):.2f} mm "
          f"(Base: {means['Base']:.2f} mm single-view)")
    order = " < ".join(sorted(means, key=means.get))
    print(f"order of mean MPJPE: {order} (one seed: a difference of a millimetre or two is "
          f"within seed noise; `--seeds K` gives paired intervals)")
    share = single_seed_share(means)
    if share:
        print(experiment.share_line(share) + " (one seed)")
    print("\n".join(diagnostics_lines(diag)))
    print(f"report: {result['report']['markdown']}")
    print(f"figures: {out / 'eval' / 'figures'}  preview: {out / 'data' / 'preview.png'}  "
          f"learning curves: {out / 'eval' / 'curves.png'}")
    _print_times(timings)
    (out / "demo_summary.json").write_text(json.dumps(
        {"mpjpe_mm": means, "pgt": pgt, "diagnostics": diag, "teacher_share": share,
         "timings_s": timings, "curves": curves}, indent=1))


def single_seed_share(means: dict[str, float]) -> dict | None:
    """experiment.teacher_share from one seed's means (name -> MPJPE mm)."""
    names = (experiment.ORACLE, experiment.BASELINE, experiment.CONTROL)
    if not all(n in means for n in names):
        return None
    diffs = {f"{a} - {experiment.CONTROL}": {"all": {"mpjpe": {
        "mean": means[a] - means[experiment.CONTROL]}}} for a in names[:2]}
    return experiment.teacher_share(diffs)
