#!/usr/bin/env python3
"""The GPU run in one call: set up, test, benchmark, then run the method at GPU scale.

On the device machine (bare, no network; docs/gpu-run.md):

    python3 scripts/gpu_run.py --out $OUT                  # every phase, at most 9 minutes
    python3 scripts/gpu_run.py --out $OUT --only bench     # set-up (cheap if done), then bench

Phases, each in its own time box (`--timeout PHASE=SECONDS` sets one; time a phase leaves
unused goes to the next ones):
  setup    install the carried wheels (.whl/) into a folder on PYTHONPATH, build the
           extension in place for this GPU only, print `pose3d env` (a failure here stops
           the run)
  tests    `pytest -m cuda` (every CUDA-only test), then the tests marked on_device (models,
           losses, trainer) with POSE3D_TEST_DEVICE=cuda
  bench    `pose3d bench ops`; `pose3d bench train --anchor` (our step at 32 and 128 images
           beside a ResNet-50 classifier's, TFLOP/s alike); the step with every lever
           (compile, fused Adam, JPEGs decoded on the GPU); `pose3d bench data`
  profile  `pose3d bench profile`: torch.profiler tables of the bf16 soft-argmax at 64^3 and
           the training step (profile.md)
  ddp      one training run under torchrun with a process group (NCCL on the GPU, gloo on a
           CPU; one process, run.ddp=always), its levers on
  method   `pose3d demo --full --seeds 3 --arms GT-only L1-only Ours` (the paired
           experiment at GPU scale); its folder is kept, so a rerun resumes it
A failed phase does not stop the next ones. Everything that comes back lies in --out, at
most 8 files: summary.md, summary.json, env.json, bench.md, profile.md, the experiment's
JSON and Markdown, and logs.tar.gz with every log (and the experiment's figure). The
summary table is printed last.

`--device cpu --quick` rehearses all of it on a CPU in a minute or two (tiny sizes, a few
tests); tests/test_gpu_run.py runs that. Standard library only: it runs before anything is
installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("setup", "tests", "bench", "profile", "ddp", "method")
# Seconds per phase on one H100: together at most 9 minutes, so that a fix and a rerun of
# one phase fit in the 15 minutes of device time a session gets. The method may not finish
# in its box: a rerun (`--only method`) on the same machine resumes it.
# Time a phase leaves unused goes to the next ones (not to boxes set with --timeout).
BOX_S = {"setup": 90, "tests": 60, "bench": 130, "profile": 40, "ddp": 40, "method": 180}
QUICK_BOX_S = {"setup": 240, "tests": 240, "bench": 400, "profile": 240, "ddp": 240,
               "method": 300}  # a loaded 2-core CPU
TOTAL_S = 540
QUICK_TOTAL_S = 1500
ARMS = ["GT-only", "L1-only", "Ours"]  # the method issue's arms (pose3d.experiment.arms)
RESERVE_S = 8  # kept for bundling and the summary
# Files that may come back from $OUT (the device returns at most 8).
KEPT_MAX_BYTES = 15 << 20

# The CPU rehearsal of the demo: test_demo.py's sizes laid over the CPU preset.
TINY_DEMO = {
    "studio": {"image_size": 64, "clips_per_action": 1, "frames_per_clip": 4,
               "frame_step": 2, "actions": ["walking", "waving"]},
    "overrides": [
        "data.image_size=64", "data.num_workers=0", "model.sv.backbone=resnet10",
        "model.sv.deconv_channels=16", "model.sv.num_deconv=2", "model.sv.depth_bins=8",
        "model.mv.backbone=resnet10", "model.mv.deconv_channels=16", "model.mv.num_deconv=2",
        "optim.mv_pretrain.batch_size=2", "optim.sv_pretrain.batch_size=2",
        "optim.finetune.batch_size=2", "optim.pgt.batch_size=4", "run.ckpt_every_steps=2",
        "run.progress=false",
    ],
    "steps": 2,
}
TINY_DEMO_RUNNER = """
import json, sys
from pose3d import cli, demo
tiny = json.loads(sys.argv[1])
base = demo.PRESETS["small"]
demo.PRESETS["small"] = dict(
    base, studio={**base["studio"], **tiny["studio"], "actions": tuple(tiny["studio"]["actions"])},
    overrides=[*base["overrides"], *tiny["overrides"]],
    batches={k: tiny["steps"] for k in base["batches"]})
sys.exit(cli.main(["demo", *sys.argv[2:]]))
"""


@dataclass
class Step:
    name: str
    rc: int | None = None  # None: timed out or not started
    seconds: float = 0.0
    log: str = ""
    status: str = "not run"


@dataclass
class Phase:
    name: str
    status: str = "not selected"  # ok | fail | timeout | skipped | not selected
    seconds: float = 0.0
    figure: str = ""
    steps: list[Step] = field(default_factory=list)


class Run:
    """The run's folders, environment, deadline and results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.work = Path(args.work).resolve()
        self.logs = self.work / "logs"
        for d in (self.out, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.site = self.work / "site"
        self.deadline = time.monotonic() + args.total
        self.phases = {name: Phase(name) for name in PHASES}
        self.boxes = dict(QUICK_BOX_S if args.quick else BOX_S)
        self.boxes.update(args.timeout)
        self.cuda = args.device == "cuda"
        self.env = dict(os.environ)
        self.env.update({
            "PYTHONPATH": os.pathsep.join([str(REPO), str(self.site),
                                           os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
            "TQDM_MININTERVAL": "10", "PYTHONDONTWRITEBYTECODE": "1",
        })

    def python(self, *argv: str) -> list[str]:
        return [sys.executable, *argv]

    def pose3d(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "pose3d", *argv]

    def step(self, phase: Phase, name: str, argv: list[str], box_s: float,
             env: dict | None = None, stdout: Path | None = None) -> Step:
        """Run one command, its output in logs/<phase>_<name>.log (stdout to `stdout` if
        given), killed with its children after `box_s` or at the run's deadline."""
        step = Step(name, log=f"{phase.name}_{name}.log")
        phase.steps.append(step)
        limit = min(box_s, self.deadline - time.monotonic() - RESERVE_S)
        if limit < 1:
            step.status = "skipped (no time left)"
            return step
        log = self.logs / step.log
        shown = " ".join("<script>" if "\n" in a else a for a in argv)
        print(f"[gpu_run] {phase.name}/{name}: {shown[:200]} (box {limit:.0f} s)", flush=True)
        start = time.monotonic()
        with open(log, "w") as log_f, open(stdout or os.devnull, "w") as out_f:
            log_f.write(f"$ {shown}\n")
            log_f.flush()
            proc = subprocess.Popen(argv, cwd=REPO, env={**self.env, **(env or {})},
                                    stdout=out_f if stdout else log_f, stderr=log_f,
                                    start_new_session=True)
            try:
                step.rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        step.seconds = time.monotonic() - start
        step.status = ("timeout" if step.rc is None else "ok" if step.rc == 0
                       else f"fail (exit {step.rc})")
        if step.rc != 0:
            print(f"[gpu_run] {phase.name}/{name}: {step.status} after {step.seconds:.0f} s; "
                  f"end of {step.log}:\n{_tail(log, 15)}", flush=True)
        return step


def _kill_group(proc: subprocess.Popen) -> None:
    """End the command and every process it started (DataLoader workers, torchrun)."""
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int) -> str:
    text = path.read_text(errors="replace").replace("\r", "\n").splitlines()
    return "\n".join("    " + line[:200] for line in text[-lines:])


# ---- phases


def phase_setup(run: Run, phase: Phase) -> None:
    box = run.boxes["setup"]
    end = time.monotonic() + box
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    stamp = run.site / ".installed"
    listing = "\n".join(w.name for w in wheels)
    if wheels and not (stamp.is_file() and stamp.read_text() == listing):
        s = run.step(phase, "wheels", run.python(
            "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
            "--no-cache-dir", "--upgrade", "--target", str(run.site), *map(str, wheels)), box)
        if s.rc != 0:
            return
        stamp.write_text(listing)
    probe = run.work / "probe.json"
    s = run.step(phase, "probe", run.python("-c", PROBE), end - time.monotonic(), stdout=probe)
    if s.rc != 0:
        return
    facts = json.loads(probe.read_text())
    if run.cuda and not facts["cuda"]:
        phase.figure = "torch sees no CUDA device"
        s.status = "fail (no CUDA device)"
        return
    arch = facts.get("capability") or ""
    built = facts.get("extension") or {}
    # On the GPU a build kept from an earlier call on this machine is reused only if the
    # sources are the same (a fix between two calls must be compiled); the CPU rehearsal
    # reuses any working build.
    stamp, sources = run.work / "build.stamp", _sources_digest() + arch
    need = run.args.rebuild or not built or (run.cuda and (
        not built.get("cuda") or built.get("cuda_arch_list") != arch
        or not stamp.is_file() or stamp.read_text() != sources))
    if need:
        env = {"FORCE_CUDA": "1" if run.cuda else "0", "MAX_JOBS": str(os.cpu_count() or 4)}
        if run.cuda:
            env["TORCH_CUDA_ARCH_LIST"] = arch
        s = run.step(phase, "build", run.python("setup.py", "build_ext", "--inplace"),
                     end - time.monotonic(), env=env)
        if s.rc != 0:
            return
        stamp.write_text(sources)
    env_json = run.out / "env.json"
    s = run.step(phase, "env", run.pose3d("env", "--json"), end - time.monotonic(),
                 stdout=env_json)
    if s.rc != 0:
        return
    info = json.loads(env_json.read_text())
    width = max(map(len, info))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in info.items()), flush=True)
    if info.get("extension") != "built":
        s.status = f"fail (extension {info.get('extension')})"
    elif run.cuda and not info.get("extension_cuda_kernels"):
        s.status = "fail (extension built without CUDA kernels)"
    kernels = (f"CUDA kernels for {info.get('extension_cuda_arch_list')}"
               if info.get("extension_cuda_kernels") else "CPU kernels")
    devices = ", ".join(info.get("devices") or []) or info.get("cpu", "")
    phase.figure = (f"{devices}; torch {info.get('torch')}; {kernels}"
                    f"{'; built' if need else '; build reused'}")


def _sources_digest() -> str:
    """A digest of what the extension is built from: setup.py and csrc/."""
    digest = hashlib.sha256()
    for path in [REPO / "setup.py", *sorted((REPO / "csrc").rglob("*"))]:
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# Printed as JSON by the set-up's probe: what torch sees and how pose3d._C was built.
PROBE = """
import json, torch
facts = {"cuda": torch.cuda.is_available(), "capability": None, "extension": None}
if facts["cuda"]:
    facts["capability"] = "%d.%d" % torch.cuda.get_device_capability()
import omegaconf, webdataset, cv2, scipy, matplotlib, tqdm, yaml, torchvision  # noqa
try:
    from pose3d.extension import build_info
    facts["extension"] = build_info()
except ImportError:
    pass
print(json.dumps(facts))
"""


def _junit_counts(path: Path) -> dict[str, int]:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return counts
    for suite in root.iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    return counts


def phase_tests(run: Run, phase: Phase) -> None:
    box, quick = run.boxes["tests"], run.args.quick
    end = time.monotonic() + box
    pytest = run.python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                        "-r", "fEs")
    device_files = (["tests/test_losses.py"] if quick else
                    ["tests/test_models.py", "tests/test_losses.py", "tests/test_train_stages.py"])
    selections = [
        ("cuda", ["-m", "cuda", *(["tests/test_soft_argmax.py"] if quick else ["tests"])], {}),
        ("on_device", ["-m", "on_device", *device_files],
         {"POSE3D_TEST_DEVICE": run.args.device}),
    ]
    figures = []
    for name, select, env in selections:
        xml = run.logs / f"tests_{name}.xml"
        s = run.step(phase, name, [*pytest, f"--junitxml={xml}", *select],
                     end - time.monotonic(), env=env)
        c = _junit_counts(xml)
        passed = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
        if s.rc == 5:  # pytest: nothing selected
            s.status = "fail (no test selected)"
            figures.append(f"{name}: no test selected")
            continue
        figures.append(f"{name} {passed} passed, {c['failures'] + c['errors']} failed, "
                       f"{c['skipped']} skipped")
    phase.figure = "; ".join(figures)


def _tables(text: str) -> list[list[dict[str, str]]]:
    """The Markdown tables of a benchmark's output, as lists of {header: cell}."""
    tables, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            body = [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
            tables.append([dict(zip(rows[0], r)) for r in body])
            rows = []
    return tables


def _bench_figure(name: str, text: str) -> str:
    """One key figure of a benchmark's tables ('' when the tables are not as expected)."""
    try:
        tables = _tables(text)
        if name == "ops":
            fused = [r for t in tables for r in t
                     if r.get("impl") == "fused" and r.get("pass") == "fwd+bwd"]
            speedups = [r for t in tables for r in t if "vs batched svd fwd" in r]
            f = fused[-1]
            return (f"soft-argmax fwd+bwd {f['speed-up']} eager, {f['of copy BW']} of copy BW "
                    f"at {f['volume']} {f['dtype']}; triangulate "
                    f"{speedups[-1]['vs batched svd fwd']} batched SVD at B={speedups[-1]['B']}")
        if name in ("train", "levers"):
            parts, share = [], "of anchor's TFLOP/s"
            for r in tables[-1]:
                if r["model"].startswith("anchor"):
                    parts.append(f"anchor {r['TFLOP/s model only']} TFLOP/s")
                elif r["images/s end to end"].startswith("failed"):
                    parts.append(f"{r['images/step']} img/step {r['images/s end to end']}")
                else:
                    anchor = f"{r[share]} of anchor, " if r[share] != "-" else ""
                    parts.append(f"{r['images/step']} img/step {r['images/s end to end']} img/s "
                                 f"({r['TFLOP/s end to end']} TFLOP/s, {anchor}data wait "
                                 f"{r['data wait']})")
            return ", ".join(parts)
        if name == "data":
            r = tables[-1][0]
            return f"{r['read images/s/worker']} images/s/worker read at {r['input px']} px"
    except (IndexError, KeyError):
        pass
    return ""


def phase_bench(run: Run, phase: Phase) -> None:
    box, quick, dev = run.boxes["bench"], run.args.quick, run.args.device
    end = time.monotonic() + box
    # The share of the box each benchmark gets at most; a fast one leaves its rest to the next.
    shares = {"ops": 0.3, "train": 0.25, "levers": 0.3, "data": 0.15}
    workers = ["--num-workers", str(max(1, (os.cpu_count() or 1) - 2))]
    small = ["--quick", "--tuples", "8", "--num-workers", "0"]
    commands = {
        "ops": ["ops", "--device", dev, *(["--quick"] if quick else [])],
        # our step at 8 and 32 tuples (32 and 128 images) beside the ResNet-50 anchor
        "train": ["train", "--device", dev, "--anchor", "--fused", *(
            small if quick else ["--batch-size", "8", "32", *workers])],
        # every lever at once (compile takes a minute on a GPU, forever on a 2-core CPU)
        "levers": ["train", "--device", dev, "--fused", "--decode-on-device", *(
            small if quick else ["--batch-size", "32", "--compile", *workers])],
        "data": ["data", "--device", dev, *(
            ["--sizes", "64", "--tuples", "8", "--read-epochs", "1", "--batch-size", "4",
             "--no-model"] if quick else [])],
    }
    sections, figures = [], []
    for i, (name, argv) in enumerate(commands.items()):
        left = end - time.monotonic()
        later = sum(shares[n] for n in list(commands)[i:])
        table = run.logs / f"bench_{name}.md"
        s = run.step(phase, name, run.pose3d("bench", *argv), left * shares[name] / later,
                     stdout=table)
        if name == "levers" and s.rc == 0 and not run.args.quick and not _compiled(table):
            s.status = "fail (no compiled row)"
        text = table.read_text() if table.is_file() else ""
        sections.append(f"<!-- pose3d bench {' '.join(argv)}: {s.status}, {s.seconds:.0f} s "
                        f"-->\n\n{text.strip()}\n")
        figure = _bench_figure(name, text) if s.rc == 0 else s.status
        figures.append(f"{name}: {figure or 'see bench.md'}")
    (run.out / "bench.md").write_text("\n".join(sections))
    phase.figure = "; ".join(figures)


def _compiled(table: Path) -> bool:
    """Whether bench train's table holds a compiled step that ran."""
    rows = [r for t in _tables(table.read_text()) for r in t]
    return any("compile" in r.get("levers", "") and
               not r.get("images/s end to end", "failed").startswith("failed") for r in rows)


def phase_profile(run: Run, phase: Phase) -> None:
    argv = ["profile", "--device", run.args.device, "--fused", *(
        ["--quick", "--tuples", "8", "--num-workers", "0", "--calls", "2"] if run.args.quick
        else ["--batch-size", "8", "--num-workers", "4"])]
    md = run.out / "profile.md"
    s = run.step(phase, "profile", run.pose3d("bench", *argv), run.boxes["profile"], stdout=md)
    shares = [line.split(";")[1].strip() for line in md.read_text().splitlines()
              if line.startswith("wall ")] if md.is_file() else []
    if s.rc == 0:
        phase.figure = "; ".join(f"{what}: {share}" for what, share in
                                 zip(("soft-argmax", "train step"), shares))


# The ddp phase's run: the tiny config on freshly rendered shards, every lever on.
DDP_OVERRIDES = [
    "stage=sv_pretrain", "run.ddp=always", "optim.sv_pretrain.epochs=1",
    "data.batches_per_epoch=12", "optim.sv_pretrain.batch_size=4", "optim.fused=true",
    "optim.lr_scaling=linear", "optim.lr_reference_batch=2", "data.decode_on_device=true",
    "data.num_workers=2", "run.log_every_steps=4", "run.ckpt_every_steps=100",
]


def phase_ddp(run: Run, phase: Phase) -> None:
    end = time.monotonic() + run.boxes["ddp"]
    folder = run.work / "ddp"
    data = folder / "data"
    if not (data / "manifest.json").is_file():
        s = run.step(phase, "synth", run.pose3d(
            "synth", "--out", str(data), "--labeled", "S1", "--unlabeled", "", "--eval", "",
            "--actions", "walking", "--clips-per-action", "1", "--frames-per-clip", "16",
            "--frame-step", "1", "--image-size", "64", "--workers", "2", "--no-progress",
            "--overwrite"), end - time.monotonic())
        if s.rc != 0:
            return
    root = folder / "run"
    shutil.rmtree(root, ignore_errors=True)
    cmd = run.python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                     "-m", "pose3d.train", "--config", "launch/configs/tiny.yaml",
                     *DDP_OVERRIDES, f"data.root={data}", f"run.root={root}",
                     f"run.device={run.args.device}")
    s = run.step(phase, "torchrun", cmd, end - time.monotonic())
    log_path = run.logs / s.log
    log = log_path.read_text(errors="replace") if log_path.is_file() else ""
    backend = "nccl" if run.cuda else "gloo"
    if f"backend {backend}" not in log:
        if s.rc == 0:
            s.status = f"fail (no process group with {backend})"
        return
    figure = [f"DDP over 1 process, backend {backend}"]
    metrics = root / "sv_pretrain" / "metrics.jsonl"
    if metrics.is_file():
        last = json.loads(metrics.read_text().splitlines()[-1])
        figure.append(f"step {last.get('step')}: loss {last.get('train/loss', 0):.4g}, "
                      f"{last.get('perf/images_per_s', 0):.0f} img/s, lr "
                      f"{last.get('train/lr', 0):.2g}")
    phase.figure = "; ".join(figure)


def phase_method(run: Run, phase: Phase) -> None:
    box, quick = run.boxes["method"], run.args.quick
    end = time.monotonic() + box
    # Kept between calls: a rerun (`--only method`) on the same warm machine resumes the demo
    # (data, finished stages and fine-tunings are reused) instead of starting over.
    out = run.work / "method"
    argv = ["--out", str(out), "--wandb", "disabled",
            "--workers", str(2 if quick else os.cpu_count() or 1),
            "--seeds", "2" if quick else str(run.args.seeds)]
    # every arm and its evaluation did not fit the box (H200): only those asked for (the
    # demo refuses an arm it does not know, in one line)
    argv += ["--arms", *run.args.arms]
    figure = []
    if quick:
        cmd = run.python("-c", TINY_DEMO_RUNNER, json.dumps(TINY_DEMO), *argv)
    else:
        cmd = run.pose3d("demo", "--full", *argv)
    s = run.step(phase, "demo", cmd, end - time.monotonic())
    # the figure travels in logs.tar.gz: $OUT holds at most 8 files
    kept = [out / "experiment" / f"experiment.{ext}" for ext in ("json", "md")]
    kept = [p for p in kept if p.is_file()]
    for p in kept:
        shutil.copy(p, run.out / p.name)
    summary = out / "demo_summary.json"
    if summary.is_file():
        means = json.loads(summary.read_text()).get("mpjpe_mm", {})
        figure.append("MPJPE " + ", ".join(f"{k} {v:.1f}" for k, v in means.items()) + " mm")
    if kept:
        figure.append("experiment: " + ", ".join(p.name for p in kept))
        md = run.out / "experiment.md"
        if md.is_file():
            text = md.read_text()
            print(f"\n{text[:3000]}", flush=True)
            figure.append(_paired_figure(text))
    elif s.rc == 0:
        s.status = "fail (no experiment/experiment.json)"
    phase.figure = "; ".join(f for f in figure if f)


def _paired_figure(experiment_md: str) -> str:
    """The mean row of the experiment's paired differences ('' if there is none)."""
    _, _, section = experiment_md.partition("## Paired differences")
    rows = [r for t in _tables(section)[:1] for r in t if r.get("camera") == "mean"]
    if not rows:
        return ""
    return "paired " + ", ".join(f"{k} {v}" for k, v in rows[0].items() if k != "camera")


RUNNERS = {"setup": phase_setup, "tests": phase_tests, "bench": phase_bench,
           "profile": phase_profile, "ddp": phase_ddp, "method": phase_method}


# ---- results


def _bundle(run: Run) -> None:
    """logs.tar.gz: every log, the JUnit files and the method run's small files."""
    path = run.out / "logs.tar.gz"
    budget = KEPT_MAX_BYTES
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted(run.logs.iterdir()):
            tar.add(f, arcname=f"logs/{f.name}")
        method = run.work / "method"
        if method.is_dir():
            small = sorted((p for p in method.rglob("*") if p.is_file() and p.suffix in (
                ".json", ".jsonl", ".md", ".txt", ".yaml", ".png")
                and "wandb" not in p.parts), key=lambda p: (p.suffix == ".png", str(p)))
            for p in small:
                size = p.stat().st_size
                if size <= budget:
                    tar.add(p, arcname=f"method/{p.relative_to(method)}")
                    budget -= size


def _table(run: Run) -> str:
    rows = ["| phase | status | seconds | key figure |", "|---|---|---|---|"]
    for p in run.phases.values():
        rows.append(f"| {p.name} | {p.status} | {p.seconds:.0f} | {p.figure} |")
    return "\n".join(rows)


def _write_summary(run: Run, total_s: float) -> str:
    table = _table(run)
    steps = ["| step | status | seconds | log |", "|---|---|---|---|"]
    for p in run.phases.values():
        steps += [f"| {p.name}/{s.name} | {s.status} | {s.seconds:.0f} | logs/{s.log} |"
                  for s in p.steps]
    mode = f"--device {run.args.device}{' --quick' if run.args.quick else ''}"
    text = (f"# GPU run ({mode}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{total_s:.0f} s\n\n{table}\n\n## Steps\n\n" + "\n".join(steps) + "\n\n"
            "Logs: logs.tar.gz; benchmark tables: bench.md; profiles: profile.md; build: "
            "env.json; the method: experiment.md / experiment.json (its figure in "
            "logs.tar.gz).\n")
    (run.out / "summary.md").write_text(text)
    (run.out / "summary.json").write_text(json.dumps(
        {"mode": mode, "seconds": total_s, "phases": [asdict(p) for p in run.phases.values()]},
        indent=1))
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_run_out"),
                        help="what comes back: summary, tables, bundled logs (default: $OUT)")
    parser.add_argument("--work", default=None,
                        help="scratch folder: installed wheels, logs, the method's runs "
                             "(default: /tmp/pose3d-gpu-run)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes in every phase: the CPU rehearsal")
    parser.add_argument("--only", action="append", choices=PHASES, default=None,
                        help="run this phase (repeatable); set-up always runs, cheap when done")
    parser.add_argument("--timeout", action="append", default=[], metavar="PHASE=SECONDS",
                        help=f"one phase's time box (defaults {BOX_S})")
    parser.add_argument("--total", type=float, default=None,
                        help=f"the whole run's limit in seconds (default {TOTAL_S}, with "
                             f"--quick {QUICK_TOTAL_S}); later phases get what is left")
    parser.add_argument("--seeds", type=int, default=3, help="paired seeds of the method")
    parser.add_argument("--arms", nargs="+", default=ARMS,
                        help="the method's fine-tuning arms (pose3d demo --arms)")
    parser.add_argument("--rebuild", action="store_true", help="build the extension anyway")
    args = parser.parse_args(argv)
    args.work = args.work or "/tmp/pose3d-gpu-run"
    args.total = args.total or (QUICK_TOTAL_S if args.quick else TOTAL_S)
    boxes = {}
    for item in args.timeout:
        name, _, seconds = item.partition("=")
        if name not in PHASES or not seconds:
            parser.error(f"--timeout {item}: expected PHASE=SECONDS with PHASE in {PHASES}")
        boxes[name] = float(seconds)
    args.timeout = boxes
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    wanted = set(args.only or PHASES) | {"setup"}
    start = time.monotonic()
    stopped, slack = False, 0.0
    for name in PHASES:
        phase = run.phases[name]
        if name not in wanted:
            continue
        if stopped:
            phase.status = "skipped (set-up failed)"
            continue
        if name not in args.timeout:
            run.boxes[name] += slack
        t0 = time.monotonic()
        try:
            RUNNERS[name](run, phase)
        except Exception as exc:  # a broken phase must not lose the others' results
            phase.steps.append(Step("script", status=f"fail ({type(exc).__name__}: {exc})"))
        phase.seconds = time.monotonic() - t0
        states = [s.status for s in phase.steps]
        phase.status = ("timeout" if "timeout" in states else
                        "ok" if states and all(s == "ok" for s in states) else
                        "skipped" if states and all(s.startswith("skipped") for s in states)
                        else "fail")
        print(f"[gpu_run] phase {name}: {phase.status} in {phase.seconds:.0f} s "
              f"{phase.figure}", flush=True)
        stopped = name == "setup" and phase.status != "ok"
        slack = max(0.0, run.boxes[name] - phase.seconds) if name not in args.timeout else 0.0
        _write_summary(run, time.monotonic() - start)
    _bundle(run)
    table = _write_summary(run, time.monotonic() - start)
    print(f"\n## GPU run summary ({time.monotonic() - start:.0f} s; files in {run.out}: "
          f"{', '.join(sorted(p.name for p in run.out.iterdir()))})\n\n{table}", flush=True)
    selected = [p for p in run.phases.values() if p.status != "not selected"]
    return 0 if all(p.status == "ok" for p in selected) else 1


if __name__ == "__main__":
    sys.exit(main())
