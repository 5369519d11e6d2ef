"""Training throughput: images/s of the single-view training step and the fraction of time
spent waiting for data.

The step is the trainer's own (pose3d.train.loop.train_step on the sv_pretrain stage:
ResNet + deconvolutions + soft-argmax, L1 in heatmap space, Adam), fed by the real loader
from synthetic shards written for the run. "end to end" includes waiting for the loader;
"model only" repeats one batch already on the device. bf16 autocast and channels_last on
GPU, as in training.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from pose3d.bench.timing import format_table
from pose3d.data.studio import StudioConfig
from pose3d.data.synth import synthesize
from pose3d.env_report import collect
from pose3d.train.config import load_config
from pose3d.train.distributed import DistInfo
from pose3d.train.loop import fork_safe_opencv, train_step
from pose3d.train.registry import make_stage
from pose3d.train.stage_base import StepContext, batch_to


def add_arguments(parser: argparse.ArgumentParser) -> None:
    gpu = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8 if gpu else 2,
                        help="tuples per step (x 4 views = images)")
    parser.add_argument("--steps", type=int, default=30 if gpu else 3)
    parser.add_argument("--warmup", type=int, default=5 if gpu else 1)
    parser.add_argument("--num-workers", type=int, default=8 if gpu else 2)
    parser.add_argument("--tuples", type=int, default=64, help="synthetic tuples to write")
    parser.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: resnet18, 64 px, 2 tuples, 2 steps")


def _config(args: argparse.Namespace, data: str):
    return load_config(None, [
        "stage=sv_pretrain", f"data.root={data}", f"data.image_size={args.image_size}",
        f"data.num_workers={args.num_workers}", "data.augment=false",
        f"data.batches_per_epoch={args.warmup + args.steps}", f"model.sv.backbone={args.backbone}",
        f"optim.sv_pretrain.batch_size={args.batch_size}", f"run.device={args.device}",
        f"run.amp={not args.no_amp}", f"run.channels_last={not args.no_channels_last}",
        f"run.root={data}/run"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict:
    """Returns images/s end to end and model only, and the data-wait fraction."""
    if args.quick:
        args.backbone, args.image_size, args.batch_size, args.steps, args.warmup = (
            "resnet18", 64, 2, 2, 1)
    fork_safe_opencv()  # before rendering: the loader forks workers afterwards
    with tempfile.TemporaryDirectory(prefix="pose3d-bench-train-") as tmp:
        synthesize(tmp, StudioConfig(roles={"labeled": ("S1",)}, clips_per_action=1,
                                     frames_per_clip=max(1, args.tuples // 15), frame_step=1,
                                     image_size=args.image_size), progress=False)
        cfg = _config(args, tmp)
        device = torch.device(args.device)
        info = DistInfo(0, 1, 0, device)
        stage = make_stage("sv_pretrain")
        model = stage.build_model(cfg)
        stage.prepare(cfg, model)
        model.to(device)
        channels_last = cfg.run.channels_last and device.type == "cuda"
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if args.compile:
            model = torch.compile(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        ctx = StepContext(device, channels_last)

        def step(batch: dict) -> None:
            optimizer.zero_grad(set_to_none=True)
            train_step(model, stage, batch, ctx, cfg, scaler, 1, info)
            optimizer.step()

        loader = iter(stage.train_loader(cfg, 0, info))
        images = wait = 0.0
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                _sync(device)
                start = time.perf_counter()
                images = wait = 0.0
            t0 = time.perf_counter()
            batch = next(loader)
            images += stage.num_images(batch)  # on the host, before the copy: no sync
            batch = batch_to(batch, device)
            wait += time.perf_counter() - t0
            step(batch)
        _sync(device)
        end_to_end_s = time.perf_counter() - start

        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step(batch)
        _sync(device)
        model_s = time.perf_counter() - start
    per_batch = images / args.steps
    return {"images_per_step": per_batch, "end_to_end": images / end_to_end_s,
            "model_only": per_batch * args.steps / model_s,
            "data_wait": wait / end_to_end_s}


def main(args: argparse.Namespace) -> int:
    info = collect()
    device = torch.device(args.device)
    where = info["devices"][device.index or 0] if device.type == "cuda" else info["cpu"]
    result = run(args)
    gpu = device.type == "cuda"
    print(f"# pose3d bench train on {device.type}: {where}, torch {info['torch']}, "
          f"{info['cpu_threads']} CPU threads\n")
    headers = ["model", "input", "images/step", "precision", "layout", "loader workers",
               "images/s end to end", "images/s model only", "data wait"]
    row = [f"single-view {args.backbone}", f"{args.image_size} px",
           f"{result['images_per_step']:.0f}",
           "bf16 autocast" if gpu and not args.no_amp else "fp32",
           "channels_last" if gpu and not args.no_channels_last else "contiguous",
           args.num_workers, f"{result['end_to_end']:.1f}", f"{result['model_only']:.1f}",
           f"{100 * result['data_wait']:.1f}%"]
    print(format_table(headers, [row]))
    return 0
