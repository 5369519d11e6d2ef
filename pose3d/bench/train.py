"""Training throughput: images/s of the single-view training step, the fraction of time
spent waiting for data, and TFLOP/s beside a ResNet-50 anchor.

The step is the trainer's own (pose3d.train.loop.train_step on the sv_pretrain stage:
ResNet + deconvolutions + soft-argmax, L1 in heatmap space, Adam), fed by the real loader
from synthetic shards written for the run. "end to end" includes waiting for the loader;
"model only" repeats one batch already on the device. bf16 autocast and channels_last on
GPU, as in training. Each --batch-size is a row; the levers (--compile, --fused,
--decode-on-device) apply to every row. --anchor adds the row of a plain torchvision
ResNet-50 classifier's step (pose3d.bench.anchor); FLOPs are counted alike for all rows
(pose3d.bench.flops).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from pose3d.bench.anchor import time_anchor
from pose3d.bench.flops import train_flops_per_image
from pose3d.bench.timing import format_table
from pose3d.cliargs import add_threads
from pose3d.data.studio import StudioConfig
from pose3d.data.synth import synthesize
from pose3d.env_report import collect
from pose3d.train.config import COMPILE_MODES, load_config
from pose3d.train.distributed import DistInfo
from pose3d.train.loop import autocast, fork_safe_opencv, train_step
from pose3d.train.optimizer import make_optimizer
from pose3d.train.registry import make_stage
from pose3d.train.stage_base import StepContext, TrainStage, batch_to


def add_arguments(parser: argparse.ArgumentParser) -> None:
    gpu = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    add_threads(parser)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8 if gpu else 2],
                        help="tuples per step (x 4 views = images); several: a row each")
    parser.add_argument("--steps", type=int, default=30 if gpu else 3)
    parser.add_argument("--warmup", type=int, default=5 if gpu else 1)
    parser.add_argument("--num-workers", type=int, default=8 if gpu else 2)
    parser.add_argument("--tuples", type=int, default=64, help="synthetic tuples to write")
    parser.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile's mode (reduce-overhead: CUDA graphs)")
    parser.add_argument("--fused", action="store_true",
                        help="fused Adam on CUDA, foreach on the CPU (optim.fused)")
    parser.add_argument("--decode-on-device", action="store_true",
                        help="JPEGs decoded on the device (data.decode_on_device)")
    parser.add_argument("--anchor", action="store_true",
                        help="add a plain ResNet-50 classifier's step (bf16, channels_last, "
                             "fused SGD on GPU) and compare TFLOP/s")
    parser.add_argument("--anchor-batch", type=int, default=256 if gpu else 2)
    parser.add_argument("--anchor-size", type=int, default=None,
                        help="the anchor's image side in px (default 224; --quick 64)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: resnet18, 64 px, 2 tuples, 2 steps (anchor: 2 "
                             "images of 64 px)")


def _config(args: argparse.Namespace, data: str, batch_size: int, extra: Sequence[str] = ()):
    return load_config(None, [
        "stage=sv_pretrain", f"data.root={data}", f"data.image_size={args.image_size}",
        f"data.num_workers={args.num_workers}", "data.augment=false",
        f"data.decode_on_device={args.decode_on_device}",
        f"data.batches_per_epoch={args.warmup + args.steps}", f"model.sv.backbone={args.backbone}",
        f"optim.sv_pretrain.batch_size={batch_size}", f"optim.fused={args.fused}",
        f"run.device={args.device}", f"run.amp={not args.no_amp}",
        f"run.channels_last={not args.no_channels_last}", f"run.compile={args.compile}",
        f"run.compile_mode={args.compile_mode}", f"run.root={data}/run", *extra])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Step:
    """The single-view training step, ready to run: `run(batch)` takes one optimiser step
    on a device batch; `loader` yields host batches (batch_to moves them)."""

    cfg: DictConfig
    stage: TrainStage
    model: nn.Module  # as built (not compiled): for counting FLOPs
    ctx: StepContext
    device: torch.device
    loader: Iterator[dict]
    run: Callable[[dict], None]


def prepare_step(args: argparse.Namespace, data: str, batch_size: int,
                 extra: Sequence[str] = ()) -> Step:
    """The trainer's sv_pretrain step on the shards in `data`, per `args` (the levers), with
    the config overrides `extra` last."""
    cfg = _config(args, data, batch_size, extra)
    device = torch.device(args.device)
    info = DistInfo(0, 1, 0, device)
    stage = make_stage("sv_pretrain")
    model = stage.build_model(cfg)
    stage.prepare(cfg, model)
    model.to(device)
    channels_last = cfg.run.channels_last and device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model.parameters(), device)
    stepped = torch.compile(model, mode=cfg.run.compile_mode) if cfg.run.compile else model
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    ctx = StepContext(device, channels_last)

    def run(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        train_step(stepped, stage, batch, ctx, cfg, scaler, 1, info)
        optimizer.step()

    return Step(cfg, stage, model, ctx, device, iter(stage.train_loader(cfg, 0, info)), run)


def synthetic_shards(folder: str, args: argparse.Namespace) -> None:
    """args.tuples tuples (at least 15) of args.image_size px in `folder`."""
    fork_safe_opencv()  # before rendering: the loader forks workers afterwards
    synthesize(folder, StudioConfig(roles={"labeled": ("S1",)}, clips_per_action=1,
                                    frames_per_clip=max(1, args.tuples // 15), frame_step=1,
                                    image_size=args.image_size), progress=False)


def measure_step(args: argparse.Namespace, data: str, batch_size: int) -> dict:
    """images/s end to end and model only, the data-wait fraction and the training FLOPs
    per image of the single-view step at `batch_size` tuples, on shards in `data`."""
    s = prepare_step(args, data, batch_size)
    device = s.device
    images = wait = 0.0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            _sync(device)
            start = time.perf_counter()
            images = wait = 0.0
        t0 = time.perf_counter()
        batch = next(s.loader)
        images += s.stage.num_images(batch)  # on the host, before the copy: no sync
        batch = batch_to(batch, device)
        wait += time.perf_counter() - t0
        s.run(batch)
    _sync(device)
    end_to_end_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(args.steps):
        s.run(batch)
    _sync(device)
    model_s = time.perf_counter() - start
    per_batch = images / args.steps
    with autocast(s.cfg, device):
        flops = train_flops_per_image(lambda: s.stage.step(s.model, batch, s.ctx),
                                      s.stage.num_images(batch))
    return {"images_per_step": per_batch, "end_to_end": images / end_to_end_s,
            "model_only": per_batch * args.steps / model_s,
            "data_wait": wait / end_to_end_s, "flops_per_image": flops}


def levers(args: argparse.Namespace) -> str:
    levers = [f"compile ({args.compile_mode})" if args.compile else "",
              "fused Adam" if args.fused else "", "decode on device" if args.decode_on_device
              else ""]
    return ", ".join(x for x in levers if x) or "none"


HEADERS = ["model", "input", "images/step", "precision", "layout", "levers", "loader workers",
           "images/s end to end", "images/s model only", "data wait",
           "GFLOP/image fwd+bwd", "TFLOP/s end to end", "TFLOP/s model only",
           "of anchor's TFLOP/s"]


def _tflops(result: dict, key: str) -> float:
    return result[key] * result["flops_per_image"] / 1e12


def apply_quick(args: argparse.Namespace) -> None:
    """--quick's sizes (a smoke run) over the arguments."""
    if args.quick:
        args.backbone, args.image_size, args.batch_size, args.steps, args.warmup = (
            "resnet18", 64, [2], 2, 1)
        args.anchor_batch, args.anchor_size = 2, args.anchor_size or 64
    args.anchor_size = args.anchor_size or 224


def rows(args: argparse.Namespace) -> list[list[object]]:
    """The table's rows: one per --batch-size, then the anchor's (with --anchor)."""
    apply_quick(args)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    precision = "bf16 autocast" if gpu and not args.no_amp else "fp32"
    layout = "channels_last" if gpu and not args.no_channels_last else "contiguous"
    anchor = None
    if args.anchor:
        anchor = time_anchor(args.anchor_batch, args.anchor_size, device, args.steps,
                             args.warmup, amp=not args.no_amp,
                             channels_last=not args.no_channels_last, fused=True)
    out = []
    with tempfile.TemporaryDirectory(prefix="pose3d-bench-train-") as tmp:
        synthetic_shards(tmp, args)
        for batch_size in args.batch_size:
            head = [f"single-view {args.backbone}", f"{args.image_size} px"]
            try:
                r = measure_step(args, tmp, batch_size)
            except (RuntimeError, torch.OutOfMemoryError) as exc:  # a row, not the end
                reason = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else ""
                out.append([*head, 4 * batch_size, precision, layout, levers(args),
                            args.num_workers, f"failed: {type(exc).__name__} {reason}",
                            *["-"] * 6])
                if gpu:
                    torch.cuda.empty_cache()
                continue
            ratio = (f"{100 * _tflops(r, 'end_to_end') / _tflops(anchor, 'model_only'):.0f}%"
                     if anchor else "-")
            out.append([*head, f"{r['images_per_step']:.0f}", precision, layout,
                        levers(args), args.num_workers, f"{r['end_to_end']:.1f}",
                        f"{r['model_only']:.1f}", f"{100 * r['data_wait']:.1f}%",
                        f"{r['flops_per_image'] / 1e9:.4g}", f"{_tflops(r, 'end_to_end'):.3g}",
                        f"{_tflops(r, 'model_only'):.3g}", ratio])
    if anchor:
        out.append(["anchor: torchvision resnet50 classifier", f"{args.anchor_size} px",
                    anchor["images_per_step"], "bf16 autocast" if anchor["bf16"] else "fp32",
                    "channels_last" if anchor["channels_last"] else "contiguous",
                    "fused SGD" if gpu else "foreach SGD", "- (images on device)", "-",
                    f"{anchor['model_only']:.1f}", "-",
                    f"{anchor['flops_per_image'] / 1e9:.4g}", "-",
                    f"{_tflops(anchor, 'model_only'):.3g}", "100%"])
    return out


def main(args: argparse.Namespace) -> int:
    info = collect()
    device = torch.device(args.device)
    where = info["devices"][device.index or 0] if device.type == "cuda" else info["cpu"]
    table = format_table(HEADERS, rows(args))
    print(f"# pose3d bench train on {device.type}: {where}, torch {info['torch']}, "
          f"{info['cpu_threads']} CPU threads\n")
    print(table)
    print("\nFLOPs: 2 per multiply-add, convolutions and matrix products "
          "(torch.utils.flop_counter), fwd+bwd = 3 x forward. Of anchor's TFLOP/s: this "
          "row's end to end against the anchor's model only (target >= 80%).")
    return 0
