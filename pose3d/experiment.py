"""`pose3d experiment`: paired fine-tunings of one Base on one P-GT, K seeds per arm.

    pose3d experiment --demo runs/demo --seeds 5

An arm is a named list of config overrides for the finetune stage (arms()); seed k of every
arm starts from the same Base checkpoint and reads the tuples in the same order
(run.seed = k), so two arms differ only in what the arm names: GT-only (the labeled GT
alone), L1-only (GT + the teacher's P-GT), Oracle (GT + the unlabeled tuples' withheld
truth in place of P-GT: the upper bound, pose3d.train.oracle), Ours (eq. 9) and the
remedies. Every fine-tuned model is evaluated with `pose3d eval`'s functions on the eval
tuples. Written under `<out>` (default `<demo>/experiment`): experiment.json (every run's
metrics, every arm's mean and 95% t interval over seeds, the paired differences of
paired_arms and the teacher's share of the Oracle's gain), experiment.md (the same as
tables) and experiment.png (the per-seed differences).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from pose3d.cliargs import add_threads, add_wandb
from pose3d.curves import curve_overrides, learning_curves
from pose3d.eval.cli import evaluate_checkpoints
from pose3d.eval.stats import excludes_zero, format_interval, paired_difference, t_interval
from pose3d.train import agreeing, checkpoint
from pose3d.train.cli import run
from pose3d.train.config import load_config
from pose3d.train.oracle import is_current as oracle_is_current
from pose3d.train.oracle import write_oracle_pgt
from pose3d.train.reuse import SettingsMismatch, check_finished_demo, check_run, refuse

BASELINE = "L1-only"
CONTROL = "GT-only"  # the same fine-tuning on the labeled GT alone: P-GT's control
# L1-only on the unlabeled tuples' withheld truth in place of P-GT: what they could teach
ORACLE = "Oracle"
ORACLE_PGT = "oracle_pgt_shards"  # its labels, beside the P-GT folder (pose3d.train.oracle)
# L1-only on the share of P-GT tuples whose views agree best (pose3d.train.agreeing)
AGREE = "L1-agree"
AGREE_PGT = "agree_pgt_shards"
AGREE_KEEP = 0.7
METRICS = ("mpjpe", "pa_mpjpe")
CURVE_POINTS = 4  # step checkpoints kept over a fine-tuning of the first seed
EVALUATED = "checkpoints.json"  # beside an evaluation's report.json: {name: sha256 evaluated}


def arms(lambda_mv: float = 1e-4, lambda_bone: float = 4e-3) -> dict[str, list[str]]:
    """The arms: name -> finetune overrides. A new loss variant is one more entry."""
    ours = f"loss.lambda_mv={lambda_mv}"
    return {
        CONTROL: ["loss.lambda_mv=0", "data.use_pgt=false"],
        BASELINE: ["loss.lambda_mv=0"],
        ORACLE: ["loss.lambda_mv=0", "data.pgt_root=${run.root}/" + ORACLE_PGT],
        AGREE: ["loss.lambda_mv=0", "data.pgt_root=${run.root}/" + AGREE_PGT],
        "Ours": [ours],  # eq. 9, the paper's
        "Ours+bone": [ours, f"loss.lambda_bone={lambda_bone}"],
        "Ours-scale-norm": [ours, "loss.mv_mode=scale_normalised"],
        # the scale-normalised term cannot shrink, so it may bear a larger weight than eq. 9
        "Ours-scale-norm-x3": [f"loss.lambda_mv={3 * lambda_mv:g}",
                               "loss.mv_mode=scale_normalised"],
    }


def finetune_config(root: Path, out_dir: Path, seed: int, steps: int, overrides: list[str],
                    extra: list[str] = ()):
    """The config of one fine-tuning: Base's own config (sv_pretrain/config.yaml) turned into
    a finetune from Base's checkpoint, with the arm's overrides last."""
    base_cfg, base_ckpt = root / "sv_pretrain" / "config.yaml", _base_checkpoint(root)
    if not base_cfg.is_file():
        raise FileNotFoundError(f"no Base config at {base_cfg} (run the demo's stages first)")
    return load_config(base_cfg, [
        "stage=finetune", f"model.sv.weights_path={base_ckpt}",
        f"data.pgt_root={root / 'pgt_shards'}", f"data.batches_per_epoch={steps}",
        f"run.seed={seed}", f"run.out_dir={out_dir}", "run.resume=auto",
        "loss.mv_mode=pairwise", "loss.lambda_bone=0", *extra, *overrides])


def _base_checkpoint(root: Path) -> Path:
    path = root / "sv_pretrain" / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no Base checkpoint at {path} (run stage=sv_pretrain first)")
    stat = path.stat()  # ctime too: a copy put in place with an old mtime gets a new ctime
    stage = _saved_stage(path.resolve(), (stat.st_ino, stat.st_size, stat.st_mtime_ns,
                                          stat.st_ctime_ns))
    if stage != "sv_pretrain":
        raise ValueError(f"{path} is not a Base checkpoint: it was written by stage={stage}, "
                         f"Base by stage=sv_pretrain")
    return path


def prepare_oracle(root: Path, data: Path, arm_overrides: dict[str, list[str]]) -> None:
    """When the Oracle arm is asked for: its label folder (root/ORACLE_PGT) from the P-GT
    folder, made again whenever the P-GT's content changed (the P-GT stage labels on every
    run; a copied folder keeps old mtimes, so its digest decides)."""
    if ORACLE not in arm_overrides:
        return
    pgt, oracle = root / "pgt_shards", root / ORACLE_PGT
    if oracle_is_current(oracle, pgt):
        return
    record = write_oracle_pgt(pgt, oracle, data)
    print(f"[experiment] Oracle labels: {record['labeled']} tuples' withheld truth "
          f"({record['dropped']} without) -> {oracle}", flush=True)


def prepare_agreeing(root: Path, data: Path, arm_overrides: dict[str, list[str]]) -> None:
    """When the L1-agree arm is asked for: its P-GT folder (root/AGREE_PGT), the AGREE_KEEP
    share of the P-GT whose views agree best, made again whenever the P-GT's content
    changed."""
    if AGREE not in arm_overrides:
        return
    pgt, folder = root / "pgt_shards", root / AGREE_PGT
    if agreeing.is_current(folder, pgt, AGREE_KEEP):
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    record = agreeing.write_agreeing_pgt(pgt, folder, data, AGREE_KEEP, device=device,
                                         batch_size=eval_batch_size(device))
    print(f"[experiment] {AGREE} labels: the {AGREE_KEEP:.0%} of the P-GT whose views agree "
          f"best ({record['labeled']} of {record['tuples']} tuples, reprojection residual <= "
          f"{record['max_residual_px']:.2f} px) -> {folder}", flush=True)


@functools.lru_cache(maxsize=4)
def _saved_stage(path: Path, stamp: tuple) -> str | None:
    """The `stage` of the config saved in a checkpoint (cached per file version `stamp`: the
    experiment asks once per run)."""
    try:
        saved = checkpoint.load(path).get("config")
    except checkpoint.CheckpointError as exc:
        raise ValueError(str(exc)) from None
    config = yaml.safe_load(saved) if isinstance(saved, str) else saved
    return config.get("stage") if isinstance(config, dict) else None


def eval_batch_size(device: str) -> int:
    """Tuples per evaluation batch: a GPU idles on batches of 8."""
    return 64 if device.startswith("cuda") else 8


def _read_json(path: Path):
    """The JSON in `path`, None when it is absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_reuse(root: Path, out: Path, arm_overrides: dict[str, list[str]], seeds: list[int],
                steps: int, extra: list[str] = ()) -> None:
    """Before any work: every (seed, arm) run already under `out` was made with the settings
    asked for (pose3d.train.reuse), else SettingsMismatch naming the difference."""
    for seed in seeds:
        for arm, overrides in arm_overrides.items():
            out_dir = out / "runs" / arm / f"seed{seed}"
            if out_dir.is_dir():
                check_run(finetune_config(root, out_dir, seed, steps, overrides, extra))


def run_finetunings(root: Path, out: Path, arm_overrides: dict[str, list[str]],
                    seeds: list[int], steps: int, extra: list[str] = ()) -> dict[str, float]:
    """Train every (seed, arm) not finished yet; returns seconds per run label."""
    timings = {}
    base = checkpoint.digest(_base_checkpoint(root))
    for seed in seeds:  # before any training: every finished run is a fine-tuning of this Base
        for arm in arm_overrides:
            _check_finished_from(out / "runs" / arm / f"seed{seed}", root, base)
    if {ORACLE, AGREE} & set(arm_overrides):  # their labels, from this P-GT, beside the data
        data = Path(load_config(root / "sv_pretrain" / "config.yaml", []).data.root)
        prepare_oracle(root, data, arm_overrides)
        prepare_agreeing(root, data, arm_overrides)
    for seed in seeds:
        for arm, overrides in arm_overrides.items():
            out_dir = out / "runs" / arm / f"seed{seed}"
            done = out_dir / "finished.json"
            if done.is_file():
                continue
            print(f"[experiment] {arm} seed {seed}", flush=True)
            t0 = time.perf_counter()
            # the first seed keeps step checkpoints for the learning curves (pose3d.curves)
            kept = (curve_overrides(steps, CURVE_POINTS) if seed == seeds[0]
                    else [f"run.ckpt_every_steps={steps}", "run.keep_checkpoints=1"])
            run(finetune_config(root, out_dir, seed, steps, overrides, [*kept, *extra]))
            timings[f"{arm}/seed{seed}"] = time.perf_counter() - t0
            done.write_text(json.dumps({"seconds": timings[f"{arm}/seed{seed}"],
                                        "base_sha256": base}))
    return timings


def _check_finished_from(out_dir: Path, root: Path, base: str) -> None:
    """SettingsMismatch when the finished run in out_dir (finished.json) does not record
    `base` (sha256) as the Base it started from: Base was replaced since, perhaps by a file
    with an older mtime, which check_run's mtime rule misses."""
    done = out_dir / "finished.json"
    if not done.is_file():
        return
    there = (_read_json(done) or {}).get("base_sha256")
    if there != base:
        recorded = f"sha256 {there[:12]}" if isinstance(there, str) else "no digest"
        refuse(out_dir, "a run", [f"model.sv.weights_path: {_base_checkpoint(root)} (sha256 "
                                  f"{base[:12]}) is not the Base it started from ({done.name} "
                                  f"records {recorded})"])


def _evaluate(checkpoints: dict[str, Path], data: Path, out_dir: Path, device: str) -> dict:
    """Summaries of `pose3d eval`, reused from out_dir/report.json when complete and made of
    these very checkpoints: out_dir/EVALUATED records each one's digest (content, not mtime:
    a run trained again, or a checkpoint replaced by an older file, is evaluated again)."""
    report, record = out_dir / "report.json", out_dir / EVALUATED
    digests = {name: checkpoint.digest(path) for name, path in checkpoints.items()}
    if report.is_file() and _read_json(record) == digests:
        summaries = _read_json(report) or {}
        if set(checkpoints) <= set(summaries):
            return summaries
    record.unlink(missing_ok=True)  # until the new report is complete
    result = evaluate_checkpoints({k: str(v) for k, v in checkpoints.items()}, str(data),
                                  out_dir, figures=0, batch_size=eval_batch_size(device),
                                  device=device,
                                  progress=False)
    record.write_text(json.dumps(digests))
    return result["summaries"]


def evaluate_runs(root: Path, data: Path, out: Path, names: list[str], seeds: list[int],
                  device: str = "cpu") -> dict:
    """{"Base": metrics, arm: [metrics per seed]}, metrics = {"camera": {cam: {mpjpe,
    pa_mpjpe}}, "scale": prediction / GT size}. Each model is evaluated into a folder of its
    own (eval/ARM/seedK), so experiments over other arms or seeds can run side by side."""
    results: dict = {"Base": _metrics(evaluate_base(root, data, out, device))}
    for arm in names:
        for seed in seeds:
            ckpt = out / "runs" / arm / f"seed{seed}" / "checkpoints" / "latest.pt"
            summaries = _evaluate({arm: ckpt}, data, out / "eval" / arm / f"seed{seed}", device)
            results.setdefault(arm, []).append(_metrics(summaries[arm]))
    return results


def evaluate_base(root: Path, data: Path, out: Path, device: str = "cpu") -> dict:
    """`pose3d eval`'s summary of Base (eval/Base)."""
    return _evaluate({"Base": _base_checkpoint(root)}, data, out / "eval" / "Base", device)["Base"]


def _metrics(summary: dict) -> dict:
    cams = {c: {m: row[m] for m in METRICS} for c, row in summary["camera"].items()}
    return {"camera": cams, "scale": summary.get("views", {}).get("scale", float("nan"))}


def summarise(results: dict, seeds: list[int]) -> dict:
    """Per arm mean and 95% interval per camera and metric (and of the scale); the paired
    differences (paired_arms): what fine-tuning alone gives, P-GT's effect, eq. 9's."""
    arm_names = [a for a in results if a != "Base"]
    cameras = list(results["Base"]["camera"])

    def values(arm: str, cam: str | None, metric: str) -> list[float]:
        runs = results[arm] if arm != "Base" else [results["Base"]]
        return [r["scale"] if cam is None else r["camera"][cam][metric] for r in runs]

    def table(fn) -> dict:
        out = {cam: {m: fn(cam, m) for m in METRICS} for cam in cameras}
        out["scale"] = fn(None, "scale")
        return out

    arms_out = {a: table(lambda c, m, a=a: t_interval(values(a, c, m)))
                for a in ["Base", *arm_names]}
    pairs = paired_arms(arm_names)
    diffs = {f"{a} - {b}": table(lambda c, m, a=a, b=b: paired_difference(
        values(a, c, m), values(b, c, m))) for a, b in pairs}
    return {"seeds": seeds, "arms": arms_out, "differences": diffs,
            "teacher_share": teacher_share(diffs)}


def paired_arms(names: list[str]) -> list[tuple[str, str]]:
    """(a, b) of every paired difference a - b, each pair differing in one thing: GT-only -
    Base (more steps on GT), L1-only - GT-only (P-GT in place of part of the GT), every
    consistency arm - L1-only (its loss term). Without the control, L1-only - Base."""
    pairs = []
    if CONTROL in names:
        pairs.append((CONTROL, "Base"))
    if BASELINE in names:
        pairs.append((BASELINE, CONTROL if CONTROL in names else "Base"))
    if ORACLE in names:
        pairs.append((ORACLE, CONTROL if CONTROL in names else "Base"))
    if BASELINE in names:
        pairs += [(a, BASELINE) for a in names if a not in (BASELINE, CONTROL, ORACLE)]
    return pairs


def teacher_share(differences: dict) -> dict | None:
    """What the unlabeled people could teach (Oracle - GT-only), what the teacher's P-GT
    delivers (L1-only - GT-only), both overall MPJPE means (mm), and their ratio; None
    without those arms."""
    oracle, teacher = f"{ORACLE} - {CONTROL}", f"{BASELINE} - {CONTROL}"
    if oracle not in differences or teacher not in differences:
        return None
    could, delivers = (differences[k]["all"]["mpjpe"]["mean"] for k in (oracle, teacher))
    return {"oracle_gain_mm": could, "teacher_gain_mm": delivers,
            "share": delivers / could if could < 0 else None}


def share_line(share: dict | None) -> str:
    """One sentence of teacher_share for reports."""
    if share is None:
        return ""
    ratio = "n/a (the Oracle gains nothing)" if share["share"] is None \
        else f"{share['share']:.0%}"
    return (f"The unlabeled people could teach {share['oracle_gain_mm']:+.2f} mm (Oracle - "
            f"GT-only); the teacher's P-GT delivers {share['teacher_gain_mm']:+.2f} mm "
            f"(L1-only - GT-only): {ratio} of it.")


def markdown(summary: dict) -> str:
    """The tables of experiment.md."""
    k = len(summary["seeds"])
    arms_out, diffs = summary["arms"], summary["differences"]
    cameras = [c for c in arms_out["Base"] if c != "scale"]
    parts = []
    for metric, label in (("mpjpe", "MPJPE"), ("pa_mpjpe", "PA-MPJPE")):
        parts += [f"## {label} (mm): mean [95% CI] over {k} seeds (Base: one model)", "",
                  _table(arms_out, cameras, metric), ""]
    parts += ["## Scale (prediction / GT size, root-aligned), mean [95% CI]", "",
              "| | " + " | ".join(arms_out) + " |", "|" + "---|" * (len(arms_out) + 1),
              "| scale | " + " | ".join(format_interval(v["scale"], 3)
                                       for v in arms_out.values()) + " |", ""]
    for metric, label in (("mpjpe", "MPJPE"), ("pa_mpjpe", "PA-MPJPE")):
        parts += [f"## Paired differences of {label} (mm): mean [95% CI] over {k} seeds; "
                  f"negative = the first is better, * = the interval excludes 0", "",
                  _table(diffs, cameras, metric, star=True), ""]
    if diffs:
        parts += ["| scale | " + " | ".join(format_interval(v["scale"], 3)
                                          for v in diffs.values()) + " |", ""]
    if summary.get("teacher_share"):
        parts += [share_line(summary["teacher_share"]), ""]
    return "\n".join(parts)


def _table(columns: dict, cameras: list[str], metric: str, star: bool = False) -> str:
    lines = ["| camera | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for cam in cameras:
        cells = [format_interval(col[cam][metric])
                 + ("*" if star and excludes_zero(col[cam][metric]) else "")
                 for col in columns.values()]
        lines.append(f"| {'mean' if cam == 'all' else cam} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(summary: dict, path: Path) -> Path:
    """Per-seed paired differences of the overall MPJPE, with each mean and 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = summary["differences"]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * max(len(diffs), 1), 3.6))
    for i, d in enumerate(diffs.values()):
        row = d["all"]["mpjpe"]
        ax.scatter([i] * len(row["values"]), row["values"], s=14, color="#2e86ab", zorder=3)
        if row["n"] > 1:
            ax.errorbar([i + 0.15], [row["mean"]], yerr=[[row["mean"] - row["lo"]],
                        [row["hi"] - row["mean"]]], fmt="s", color="#e4572e", capsize=4)
    ax.axhline(0.0, color="#9a9a9a", lw=1)
    ax.set_xticks(range(len(diffs)), list(diffs), rotation=15, fontsize=8)
    ax.set_ylabel("MPJPE difference (mm), per seed")
    ax.set_title("paired differences: seeds (dots), mean and 95% CI", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_experiment(root: Path, data: Path, out: Path, arm_overrides: dict[str, list[str]],
                   seeds: list[int], steps: int, extra: list[str] = (),
                   device: str = "cpu") -> dict:
    """Fine-tune, evaluate and summarise; write experiment.json / .md / .png under out. The
    paired differences need the L1-only arm; without it only the arms' intervals are given
    (e.g. one arm per process, side by side, then one call over all arms that reuses
    every run and evaluation)."""
    if not seeds:
        raise ValueError("the experiment needs at least one seed")
    check_reuse(root, out, arm_overrides, seeds, steps, extra)
    out.mkdir(parents=True, exist_ok=True)
    t_base = time.perf_counter()
    evaluate_base(root, data, out, device)  # first: side-by-side experiments reuse it
    t0 = time.perf_counter()
    timings = run_finetunings(root, out, arm_overrides, seeds, steps, extra)
    t1 = time.perf_counter()
    results = evaluate_runs(root, data, out, list(arm_overrides), seeds, device)
    summary = summarise(results, seeds)
    summary.update(arm_overrides=arm_overrides, steps=steps, results=results,
                   timings_s={"finetune": t1 - t0,
                              "eval": time.perf_counter() - t1 + t0 - t_base,
                              "runs": timings})
    (out / "experiment.json").write_text(json.dumps(summary, indent=1))
    (out / "experiment.md").write_text(markdown(summary))
    figure(summary, out / "experiment.png")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", required=True, metavar="DIR",
                        help="the folder a `pose3d demo --out DIR` run wrote (data/, runs/ with "
                             "sv_pretrain, pgt_shards)")
    parser.add_argument("--out", default=None, help="default: <demo>/experiment")
    parser.add_argument("--seeds", type=int, default=5, help="fine-tunings per arm (K)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the runs use seeds FIRST_SEED .. FIRST_SEED+K-1")
    parser.add_argument("--steps", type=int, default=200,
                        help="fine-tuning steps per run (as in the CPU demo)")
    parser.add_argument("--arms", nargs="*", default=None,
                        help=f"which arms (default: all of {', '.join(arms())})")
    parser.add_argument("--lambda-mv", type=float, default=1e-4, help="λ2 of the Ours arms")
    parser.add_argument("--lambda-bone", type=float, default=4e-3,
                        help="weight of the bone-length term (mm) in Ours+bone")
    parser.add_argument("--curves", action="store_true",
                        help="also evaluate the first seed's step checkpoints (every 1/4 of "
                             "--steps) on the eval tuples: <out>/curves.json, curves.png")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_threads(parser)
    add_wandb(parser)


def pick_arms(every: dict[str, list[str]], names: list[str] | None) -> dict[str, list[str]]:
    """The arms named (all when `names` is empty or None), in the order given."""
    names = names or list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"unknown arm {unknown[0]!r}; arms: {', '.join(every)}")
    return {n: every[n] for n in names}


def select_arms(args: argparse.Namespace) -> dict[str, list[str]]:
    return pick_arms(arms(args.lambda_mv, args.lambda_bone), args.arms)


def check_demo(demo: Path) -> None:
    """A one-line FileNotFoundError unless `demo` holds a finished demo's data and Base."""
    for need in ("data/manifest.json", "runs/sv_pretrain/checkpoints/latest.pt",
                 "runs/pgt_shards"):
        if not (demo / need).exists():
            raise FileNotFoundError(f"--demo {demo}: no {need} (give the folder of a finished "
                                    f"`pose3d demo --out DIR` run)")


def first_seed_curves(root: Path, data: Path, out: Path, arm_names: list[str], summary: dict,
                      device: str = "cpu", batch_size: int | None = None
                      ) -> dict[str, list[dict]]:
    """The learning curves (pose3d.curves) of Base and of each arm's run of the first seed
    of `summary` (run_experiment's): the MPJPE against fine-tuning length, written to
    out/curves.json and out/curves.png. Each run's last point is its evaluation there."""
    seed, results = summary["seeds"][0], summary["results"]
    runs = {"Base": root / "sv_pretrain",
            **{arm: out / "runs" / arm / f"seed{seed}" for arm in arm_names}}
    final = {"Base": results["Base"]["camera"]["all"]["mpjpe"],
             **{arm: results[arm][0]["camera"]["all"]["mpjpe"] for arm in arm_names}}
    return learning_curves(runs, data, out, device=device, final=final,
                           batch_size=batch_size or eval_batch_size(device))


def main(args: argparse.Namespace) -> int:
    demo = Path(args.demo)
    out = Path(args.out) if args.out else demo / "experiment"
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
        check_demo(demo)
        check_finished_demo(demo)  # before Base is evaluated
        chosen = select_arms(args)
        summary = run_experiment(demo / "runs", demo / "data", out, chosen, seeds,
                                 args.steps, [f"run.device={args.device}",
                                              f"run.wandb={args.wandb}"], args.device)
        if args.curves:
            first_seed_curves(demo / "runs", demo / "data", out, list(chosen), summary,
                              args.device)
    except (FileNotFoundError, ValueError, SettingsMismatch) as exc:
        print(f"pose3d experiment: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(summary))
    print(f"experiment: {out / 'experiment.json'}, {out / 'experiment.md'}, "
          f"{out / 'experiment.png'}" + (f", {out / 'curves.png'}" if args.curves else ""))
    return 0
