"""Profiles (torch.profiler): the fused soft_argmax_3d forward+backward in bfloat16 at 64^3,
and the single-view training step (the step of `pose3d bench train`, its levers included).

Each is a table of the operators and kernels that took the most time (device time on a GPU,
CPU time on a CPU) over a few calls after warm-up, with the wall time per call beside the
summed device time: device time near the wall time means the device is busy (then the top
kernels say what bounds it), much less means the host or launches hold it back.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from pose3d.bench import train as bench_train
from pose3d.bench.soft_argmax import B, J
from pose3d.env_report import collect
from pose3d.ops.soft_argmax import soft_argmax_3d
from pose3d.train.stage_base import batch_to

ROWS = 15  # operators per table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bench_train.add_arguments(parser)  # the training step's options, as bench train's
    parser.add_argument("--calls", type=int, default=5, help="profiled calls of each")
    parser.add_argument("--only", choices=("soft_argmax", "train"), default=None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_calls(fn: Callable[[], object], device: torch.device, calls: int,
                  warmup: int = 2) -> tuple[str, float, float]:
    """(the profiler's table, wall ms per call, device ms per call; CPU ms on a CPU)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(device)
        wall = (time.perf_counter() - start) / calls
    events = prof.key_averages()
    key = "self_cpu_time_total"
    if gpu:  # torch < 2.4 names device time after CUDA
        key = ("self_device_time_total" if hasattr(events[0], "self_device_time_total")
               else "self_cuda_time_total")
    busy = sum(getattr(e, key) for e in events) / 1e3 / calls  # us -> ms
    return events.table(sort_by=key, row_limit=ROWS, max_name_column_width=60), wall * 1e3, busy


def _section(title: str, table: str, wall_ms: float, busy_ms: float, device: torch.device
             ) -> str:
    what = "device" if device.type == "cuda" else "CPU (self)"
    return (f"## {title}\n\nwall {wall_ms:.3f} ms per call; {what} time {busy_ms:.3f} ms per "
            f"call ({100 * busy_ms / max(wall_ms, 1e-9):.0f}% of the wall time)\n\n"
            f"```text\n{table.strip()}\n```\n")


def soft_argmax_section(args: argparse.Namespace, device: torch.device) -> str:
    size, batch = (16, 2) if args.quick else (64, B)
    x = torch.randn(batch, J, size, size, size, device=device).to(torch.bfloat16)
    x.requires_grad_()
    grad = torch.randn(batch, J, 3, device=device)
    table, wall, busy = profile_calls(
        lambda: torch.autograd.grad(soft_argmax_3d(x), x, grad), device, args.calls)
    return _section(f"soft_argmax_3d forward+backward, bfloat16, B={batch}, J={J}, {size}^3",
                    table, wall, busy, device)


def train_section(args: argparse.Namespace, device: torch.device) -> str:
    bench_train.apply_quick(args)
    with tempfile.TemporaryDirectory(prefix="pose3d-bench-profile-") as tmp:
        bench_train.synthetic_shards(tmp, args)
        step = bench_train.prepare_step(args, tmp, args.batch_size[0])
        batch = batch_to(next(step.loader), device)
        table, wall, busy = profile_calls(lambda: step.run(batch), device, args.calls,
                                          warmup=args.warmup + 1)
    images = step.stage.num_images(batch)
    return _section(f"training step, single-view {args.backbone}, {args.image_size} px, "
                    f"{images} images, levers: {bench_train.levers(args)} (batch on the "
                    f"device: no loader)", table, wall, busy, device)


def main(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    info = collect()
    where = info["devices"][device.index or 0] if device.type == "cuda" else info["cpu"]
    print(f"# pose3d bench profile on {device.type}: {where}, torch {info['torch']}\n")
    for name, section in (("soft_argmax", soft_argmax_section), ("train", train_section)):
        if args.only in (None, name):
            print(section(args, device), flush=True)
    return 0
