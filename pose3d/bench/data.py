"""Data pipeline throughput: tuples/s written (render + encode + shard) and read (tar + JPEG
decode + batch) per worker, against what the single-view model's training step consumes.

Each figure is for one process, as one DataLoader or synth worker runs (torch limited to
one thread while reading, like a DataLoader worker). The model reference is a torchvision
ResNet-50 (the single-view model's backbone) forward + backward at the same input size.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torchvision

from pose3d.bench.timing import format_table, measure
from pose3d.cliargs import add_threads
from pose3d.data import motion
from pose3d.data.loader import make_train_loader
from pose3d.data.studio import StudioConfig
from pose3d.data.synth import synthesize
from pose3d.env_report import collect
from pose3d.threads import pin_one_thread


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--tuples", type=int, default=60, help="tuples written per size")
    parser.add_argument("--read-epochs", type=int, default=3,
                        help="passes over the written tuples when timing reads")
    parser.add_argument("--batch-size", type=int, default=16, help="read batch, tuples")
    parser.add_argument("--model-batch", type=int, default=8, help="images per model step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_threads(parser)
    parser.add_argument("--no-model", action="store_true", help="skip the ResNet-50 timing")


def time_write(out_dir: str, size: int, tuples: int) -> tuple[float, int, int]:
    """(tuples/s, tuples, views per tuple) of synthesize() in one process."""
    config = StudioConfig(roles={"labeled": ("S1",)}, clips_per_action=1,
                          frames_per_clip=-(-tuples // len(motion.ACTIONS)), frame_step=1,
                          image_size=size)
    start = time.perf_counter()
    manifest = synthesize(out_dir, config, workers=1, progress=False)
    elapsed = time.perf_counter() - start
    written = manifest["roles"]["labeled"]["samples"]
    return written / elapsed, written, len(manifest["cameras"]["S1"])


def time_read(out_dir: str, tuples: int, batch_size: int, epochs: int,
              normalize: bool = True) -> float:
    """Tuples/s of the training pipeline (read, shuffle, decode, (normalise,) batch)."""
    batches = max(1, epochs * tuples // batch_size)
    threads = torch.get_num_threads()
    pin_one_thread()  # as in a DataLoader worker
    try:
        loader = make_train_loader(out_dir, batch_size, batches_per_epoch=batches,
                                   normalize=normalize)
        next(iter(make_train_loader(out_dir, batch_size, batches_per_epoch=1)))  # warm up
        start = time.perf_counter()
        count = sum(len(batch["key"]) for batch in loader)
        return count / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def time_model(size: int, batch: int, device: torch.device) -> float:
    """Images/s of ResNet-50 forward + backward + SGD step at size x size."""
    model = torchvision.models.resnet50().to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 3, size, size, device=device)

    def step():
        optimiser.zero_grad(set_to_none=True)
        model(images).float().sum().backward()
        optimiser.step()
    timing = measure(step, device, warmup=1, repeats=3, max_seconds=30)
    return batch / timing.median_s


def cpu_model() -> str:
    """The CPU's model name (as lscpu shows it), or the platform's machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return collect()["cpu"]


def main(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    info = collect()
    print(f"# pose3d bench data: CPU {cpu_model()}, {info['cpu_threads']} threads, "
          f"torch {info['torch']}, model on {device}\n")
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="pose3d-bench-data-") as tmp:
            write_rate, written, views = time_write(tmp, size, args.tuples)
            read_rate = time_read(tmp, written, args.batch_size, args.read_epochs)
            raw_rate = time_read(tmp, written, args.batch_size, args.read_epochs, False)
        row = [size, f"{write_rate:.1f}", f"{read_rate:.1f}", f"{read_rate * views:.0f}",
               f"{raw_rate:.1f}"]
        if not args.no_model:
            model_rate = time_model(size, args.model_batch, device)
            row += [f"{model_rate:.1f}", f"{read_rate * views / model_rate:.1f}x"]
        rows.append(row)
    headers = ["input px", "write tuples/s/worker", "read tuples/s/worker",
               "read images/s/worker", "read tuples/s/worker, uint8 batches"]
    if not args.no_model:
        headers += [f"ResNet-50 train images/s ({device.type}, batch {args.model_batch})",
                    "read / model (target >= 4x)"]
    print(format_table(headers, rows))
    return 0
