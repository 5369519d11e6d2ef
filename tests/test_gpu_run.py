"""The GPU run's script rehearsed on the CPU (`--device cpu --quick`), so that it cannot rot
while no GPU comes: every phase reports, what comes back is bundled into at most 8 files, a
failing phase does not stop the next one, a failed set-up stops the run."""

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_run.py"


def gpu_run(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 1600):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick",
                           "--out", str(out), "--work", str(work), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    summary = json.loads((out / "summary.json").read_text())
    phases = {p["name"]: p for p in summary["phases"]}
    return proc, out, phases


def steps(phase: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in phase["steps"]}


@pytest.mark.slow
def test_rehearsal_runs_every_phase_without_wandb_and_bundles_what_comes_back(tmp_path):
    # the GPU machine has no wandb: make importing it fail, as there
    blocked = tmp_path / "blocked" / "wandb"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('no wandb on the GPU machine')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocked.parent),
                                                        os.environ.get("PYTHONPATH")]))}
    proc, out, phases = gpu_run(tmp_path, env=env)
    printed = proc.stdout
    assert "| phase | status | seconds | key figure |" in printed.split("GPU run summary")[-1]
    assert list(phases) == ["setup", "tests", "bench", "profile", "ddp", "method"]
    for name in ("setup", "bench", "profile", "ddp", "method"):
        assert phases[name]["status"] == "ok", (name, phases[name], printed[-3000:])
    assert steps(phases["tests"])["on_device"] == "ok"
    marked = "mark.cuda" in (REPO / "tests" / "test_soft_argmax.py").read_text()
    assert steps(phases["tests"])["cuda"] == ("ok" if marked else "fail (no test selected)")
    # the loss tests on the test device
    assert re.search(r"on_device [1-9]\d* passed, 0 failed", phases["tests"]["figure"])
    assert "MPJPE Base" in phases["method"]["figure"]
    # one training run in a process group (gloo on the CPU), every lever on
    assert phases["ddp"]["figure"].startswith("DDP over 1 process, backend gloo; step 12:")
    assert "soft-argmax:" in phases["profile"]["figure"]
    assert "train step:" in phases["profile"]["figure"]
    assert "anchor" in phases["bench"]["figure"]

    kept = sorted(p.name for p in out.iterdir())
    assert len(kept) <= 8 and all(p.is_file() for p in out.iterdir())  # what the device returns
    assert {"summary.md", "summary.json", "logs.tar.gz", "bench.md", "env.json",
            "profile.md"} <= set(kept)
    assert json.loads((out / "env.json").read_text())["extension"] == "built"
    bench = (out / "bench.md").read_text()
    assert "soft_argmax_3d" in bench and "triangulate" in bench and "images/s" in bench
    assert "anchor: torchvision resnet50 classifier" in bench
    assert "batched solve float64" in bench  # the triangulate baseline meant for CUDA
    assert "fused Adam, decode on device" in bench  # the levers' row
    profile = (out / "profile.md").read_text()
    assert "## soft_argmax_3d forward+backward, bfloat16" in profile
    assert "## training step" in profile and "aten::convolution_backward" in profile
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    for phase in phases.values():
        for step in phase["steps"]:
            assert f"logs/{step['log']}" in names
    assert "method/demo_summary.json" in names


@pytest.mark.slow
def test_only_runs_set_up_and_the_phases_named_and_a_failure_does_not_stop_the_next(tmp_path):
    # 3 s hold neither the two pytest runs nor the three benchmarks: tests fails, bench runs
    proc, out, phases = gpu_run(tmp_path, "--only", "tests", "--only", "bench",
                                "--timeout", "tests=3", "--timeout", "bench=3")
    assert proc.returncode == 1
    assert phases["setup"]["status"] == "ok", proc.stdout[-3000:]
    assert phases["tests"]["status"] in ("timeout", "fail")
    started = [s for s in steps(phases["bench"]).values() if not s.startswith("skipped")]
    assert phases["bench"]["status"] in ("timeout", "fail") and started
    assert phases["method"]["status"] == "not selected" and not phases["method"]["steps"]
    assert f"| bench | {phases['bench']['status']} |" in proc.stdout.split("GPU run summary")[-1]
    assert (out / "logs.tar.gz").is_file() and (out / "summary.md").is_file()


@pytest.mark.slow
def test_a_failed_set_up_stops_the_run(tmp_path):
    proc, _, phases = gpu_run(tmp_path, "--only", "tests", "--timeout", "setup=2")
    assert proc.returncode == 1
    assert phases["setup"]["status"] in ("timeout", "fail")
    assert phases["tests"]["status"] == "skipped (set-up failed)" and not phases["tests"]["steps"]


def test_a_bad_time_box_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--timeout", "testz=3", "--out",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "--timeout testz=3" in proc.stderr
