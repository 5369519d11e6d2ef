"""CPU threads beside other work: steps/s of the demo's training step, quiet and beside one
CPU-bound process, with 1 thread, all cores, all cores with OMP_WAIT_POLICY=PASSIVE, and the
adaptive count (pose3d.threads).

The step is the CPU demo's single-view step, model only (pose3d.bench.train.prepare_step:
ResNet-18, 96 px, 4 tuples x 4 views, 24 depth bins, 3 deconvolutions of 64 channels, Adam;
bf16 where the CPU computes it natively, as the demo). Each row runs in a fresh process,
since OpenMP reads its settings when it starts; the busy process runs in a Unix session of
its own (as a job started from another terminal does) and is killed at the end, also on
Ctrl-C. Each row's rate is also given as a fraction of the quiet all-cores row of the same
invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pose3d
from pose3d.bench import train as bench_train
from pose3d.bench.timing import format_table
from pose3d.env_report import collect
from pose3d.threads import LAUNCHER_ENV, ThreadGovernor, available_cores
from pose3d.train.stage_base import batch_to

# the CPU demo's single-view model (pose3d.demo.SMALL); --quick: a smaller one
DEMO_MODEL = ["model.sv.depth_bins=24", "model.sv.deconv_channels=64", "model.sv.num_deconv=3",
              "run.amp_cpu=true"]
QUICK_MODEL = ["model.sv.depth_bins=8", "model.sv.deconv_channels=16", "model.sv.num_deconv=2",
               "run.amp_cpu=true"]
# environment keys a row sets itself (a user's value would change what the row measures)
ROW_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", LAUNCHER_ENV,
            "LOCAL_WORLD_SIZE", "PYTEST_XDIST_WORKER_COUNT")
LOADS = ("quiet", "beside 1 busy process")  # quiet first: the ratios' reference
HEADERS = ["load", "threads", "environment", "steps/s", "of quiet all-cores", "threads at end"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="measured time per row, after the warm-up steps")
    parser.add_argument("--warmup", type=int, default=3, help="steps before measuring")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 64 px, 1 tuple a step, a smaller head, 1 warm-up step "
                             "and about a second per row")


def modes(cores: int) -> list[tuple[str, dict[str, str]]]:
    """(name, environment) of each row of one load: 1 thread, all cores, all cores with
    passive waiting, and the adaptive count (no OMP setting)."""
    return [("1", {"OMP_NUM_THREADS": "1"}),
            (str(cores), {"OMP_NUM_THREADS": str(cores)}),
            (str(cores), {"OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE"}),
            ("adaptive", {})]


def row_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the keys a row sets, plus the row's own."""
    env = {k: v for k, v in os.environ.items() if k not in ROW_KEYS}
    root = str(Path(pose3d.__file__).resolve().parents[1])  # the pose3d this one runs
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return {**env, **extra}


def run_row(spec: dict, env: dict[str, str]) -> dict:
    """One row in a fresh process: {"steps_per_s", "threads"} or {"failed": why}."""
    proc = subprocess.run([sys.executable, "-m", "pose3d.bench.threads", json.dumps(spec)],
                          env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"failed": why[:100]}
    return json.loads(lines[-1])


@contextlib.contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """One CPU-bound process in a session of its own, killed on the way out (an exception,
    Ctrl-C, or SIGTERM to this process)."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield busy
    finally:
        busy.kill()
        busy.wait()
        signal.signal(signal.SIGTERM, previous)


def table_rows(spec: dict, cores: int) -> list[list[object]]:
    """Every row, quiet first, then beside the busy process."""
    results = []
    for load in LOADS:
        with busy_process() if load != "quiet" else contextlib.nullcontext():
            for name, extra in modes(cores):
                results.append((load, name, extra, run_row(spec, row_env(extra))))
    quiet = next((r.get("steps_per_s") for load, name, _, r in results  # quiet, all cores
                  if load == "quiet" and name == str(cores)), None)
    out = []
    for load, name, extra, r in results:
        environment = " ".join(f"{k}={v}" for k, v in extra.items()) or "(none)"
        if "failed" in r:
            out.append([load, name, environment, f"failed: {r['failed']}", "-", "-"])
            continue
        ratio = f"{100 * r['steps_per_s'] / quiet:.0f}%" if quiet else "-"
        out.append([load, name, environment, f"{r['steps_per_s']:.2f}", ratio, r["threads"]])
    return out


def main(args: argparse.Namespace) -> int:
    if args.seconds <= 0 or args.warmup < 0:
        print("pose3d bench: error: --seconds must be positive and --warmup >= 0",
              file=sys.stderr)
        return 2
    cores = available_cores()
    seconds, warmup = (1.0, 1) if args.quick else (args.seconds, args.warmup)
    with tempfile.TemporaryDirectory(prefix="pose3d-bench-threads-") as tmp:
        step_args = _step_args(args.quick)
        bench_train.synthetic_shards(tmp, step_args)
        spec = {"data": tmp, "seconds": seconds, "warmup": warmup, "quick": args.quick}
        rows = table_rows(spec, cores)
    info = collect()
    size = "64 px, 1 tuple" if args.quick else "96 px, 4 tuples"
    print(f"# pose3d bench threads: {info['cpu']}, {cores} cores, torch {info['torch']}; the "
          f"demo's single-view step (resnet18, {size} x 4 views), model only; {seconds:g} s "
          f"per row after {warmup} warm-up steps\n")
    print(format_table(HEADERS, rows))
    return 0


def _step_args(quick: bool) -> argparse.Namespace:
    """pose3d bench train's arguments for the demo's step on the CPU."""
    parser = argparse.ArgumentParser()
    bench_train.add_arguments(parser)
    return parser.parse_args(["--device", "cpu", "--backbone", "resnet18", "--image-size",
                              "64" if quick else "96", "--num-workers", "0", "--tuples", "15"])


def measure_row(data: str, seconds: float, warmup: int, quick: bool) -> dict:
    """In the row's process: steps/s of the step repeated on one batch for `seconds`, the
    thread governor asked once per step (it adapts only where OMP_NUM_THREADS is unset)."""
    args = _step_args(quick)
    step = bench_train.prepare_step(args, data, 1 if quick else 4,
                                    QUICK_MODEL if quick else DEMO_MODEL)
    batch = batch_to(next(step.loader), step.device)
    governor = ThreadGovernor.for_run(None, "cpu")
    for _ in range(warmup):
        step.run(batch)
        governor.step()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step.run(batch)
        governor.step()
        done += 1
    return {"steps_per_s": done / (time.perf_counter() - start), "threads": governor.threads}


if __name__ == "__main__":  # one row: python -m pose3d.bench.threads '{"data": ...}'
    print(json.dumps(measure_row(**json.loads(sys.argv[1]))))
