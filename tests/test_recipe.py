"""docs/human36m.md's recipe, run as printed on the release fixture scaled down
(tests/h36m_release_data.py): convert, the four stages (two fine-tunings) under torchrun with
two CPU processes, and the evaluation of Base, L1-only and Ours in one command. It is also
the suite's run of every stage in two processes (gloo): one RNG state per rank in the
checkpoints, pictures, one P-GT summary, P-GT shards that hold what the report counts. Also
the presets' λ2 and h36m.yaml's settings that the recipe relies on."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import h36m_release_data as fixture
import pytest
import yaml
from train_helpers import REPO

from pose3d.data.loader import iterate_samples
from pose3d.data.shards import load_manifest
from pose3d.train import checkpoint
from pose3d.train.config import load_config

DOC = REPO / "docs" / "human36m.md"
MARKER = "<!-- recipe: tests/test_recipe.py runs this block -->"
CONFIGS = REPO / "launch" / "configs"
# The paper's seven subjects, one 8-frame take each (S11's with the release's corrupt video);
# metadata.xml maps them.
TAKES = {"S1": "Directions 1", "S5": "Photo", "S6": "Directions", "S7": "Directions",
         "S8": "Greeting", "S9": "Greeting 1", "S11": "Directions"}
ACTIONS = {"Directions 1": "Directions", "Photo": "TakingPhoto", "Directions": "Directions",
           "Greeting": "Greeting", "Greeting 1": "Greeting"}
# The scale-down: the only text the test changes in the recipe, each replaced exactly.
RELEASE = "/data/h36m"
CONFIG = "launch/configs/h36m.yaml"
SCALED = {"--image-size 256": "--image-size 32", "--workers 16": "--workers 0"}
# h36m.yaml with a model and images small enough for two CPU processes; every loss and
# schedule setting (λ2, the heatmap term, cosine) and batches_per_epoch stay h36m.yaml's.
SMALL = {
    "data": {"image_size": 32, "num_workers": 0, "shuffle_buffer": 8},
    "model": {k: {"backbone": "resnet10", "backbone_weights": "", "deconv_channels": 16,
                  "num_deconv": 2, "depth_bins": 16} for k in ("sv", "mv")},
    "optim": {"mv_pretrain": {"epochs": 1, "batch_size": 2},
              "sv_pretrain": {"epochs": 1, "batch_size": 2},
              "finetune": {"epochs": 1, "batch_size": 2}, "pgt": {"batch_size": 4}},
    "run": {"device": "cpu", "progress": False, "dist_timeout_s": 120, "keep_checkpoints": 1,
            "image_every_steps": 1},
}


def recipe_commands(text: str) -> list[str]:
    """The fenced block after MARKER as commands: continuation lines joined, a for loop up
    to its `done` kept whole."""
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    commands, loop = [], []
    for line in (ln.strip() for ln in lines):
        if not line or line.startswith("#"):
            continue
        if loop or line.startswith("for "):
            loop.append(line)
            if line == "done" or line.endswith("; done"):
                commands.append("\n".join(loop))
                loop = []
            continue
        commands.append(re.sub(r"\s+", " ", line))
    assert not loop, "unterminated for loop in the recipe"
    return commands


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def test_the_recipe_block_is_there_and_uses_the_config():
    commands = recipe_commands(DOC.read_text())
    assert commands[0].startswith("pose3d convert h36m") and RELEASE in commands[0]
    assert sum(CONFIG in c for c in commands) == 3  # the loop, L1-only, Ours
    assert commands[-1].startswith("pose3d eval") and commands[-1].count("--checkpoint") == 3
    for old in SCALED:
        assert sum(old in c for c in commands) == 1, old
    # Ours takes λ2 from the config: no command sets it but L1-only's λ2 = 0
    assert [re.findall(r"loss\.lambda_mv=\S+", c) for c in commands if "lambda_mv" in c] == \
        [["loss.lambda_mv=0"]]


def test_presets_share_one_lambda_mv_per_depth_resolution():
    values = {}
    for name in ("h36m.yaml", "h36m_s1.yaml", "mpi_inf_3dhp.yaml", "synthetic.yaml"):
        cfg = load_config(CONFIGS / name)
        assert cfg.model.sv.depth_bins == 64, name
        values[name] = cfg.loss.lambda_mv
    assert len(set(values.values())) == 1, values
    # the value docs/design.md gives for D = 64, S = 2000 mm: 0.4 of λ1 D / (3 J S)
    assert values["h36m.yaml"] == pytest.approx(0.4 * 64 / (3 * 17 * 2000), rel=0.01)


@pytest.mark.parametrize("name", ["h36m.yaml", "h36m_s1.yaml", "mpi_inf_3dhp.yaml"])
def test_real_data_presets_use_what_the_demo_measured(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.optim.lr_schedule == "cosine"
    assert cfg.loss.lambda_heatmap > 0
    assert cfg.data.batches_per_epoch is None  # one pass over each stage's tuples per rank


@pytest.mark.slow
def test_the_recipe_runs_as_printed_on_a_scaled_down_release(tmp_path, monkeypatch):
    release = tmp_path / "h36m"
    release.mkdir()
    frames = fixture.FRAMES
    fixture.build_release(release, takes={s: {t: (frames, frames)} for s, t in TAKES.items()})
    monkeypatch.setattr(fixture, "MAPPING", {s: {(ACTIONS[t], 1): t} for s, t in TAKES.items()})
    fixture.write_metadata(release / "metadata.xml")
    work = tmp_path / "work"
    work.mkdir()
    (work / "launch").symlink_to(REPO / "launch")
    config = _merge(yaml.safe_load((REPO / CONFIG).read_text()), SMALL)
    (work / "h36m_small.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "NPROC": "2", "MAX_RESTARTS": "0", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    printed = []
    for command in recipe_commands(DOC.read_text()):
        for old, new in {RELEASE: str(release), CONFIG: "h36m_small.yaml", **SCALED}.items():
            command = command.replace(old, new)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        printed.append(done.stdout)
    runs = work / "runs" / "h36m"
    pgt = json.loads((runs / "pgt" / "pgt_report.json").read_text())
    assert pgt["scored"] == pgt["labeled"] > 0  # the teacher scored on the withheld truth
    assert pgt["labeled"] + pgt["dropped"] == pgt["tuples"] == 4  # S7, S8: frames 0 and 5
    assert "".join(printed).count("pgt:") == 1  # rank 0 alone prints the P-GT summary
    samples = list(iterate_samples(str(runs / "pgt_shards")))
    assert load_manifest(runs / "pgt_shards")["roles"]["unlabeled"]["samples"] == len(
        {s.key for s in samples}) == pgt["labeled"]
    assert all(s.pgt is not None and s.joints3d is None for s in samples)
    for stage in ("mv_pretrain", "sv_pretrain", "finetune", "finetune_l1_only"):
        last = checkpoint.load(runs / stage / "checkpoints" / "latest.pt")
        assert last["world_size"] == 2 and len(last["rng"]) == 2, stage  # a state per rank
        assert list((runs / stage / "images").glob("*.png")), stage
    rows = [json.loads(r) for r in (runs / "finetune" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train/loss_mv"]) for r in rows if "train/loss_mv" in r)
    report = json.loads((runs / "eval" / "report.json").read_text())
    assert set(report) == {"Base", "L1-only", "Ours"}
    # one pass per epoch on each of the 2 ranks, batches of 2: --frame-step 5 keeps frames 0
    # and 5 of each take, so labeled S1, S5, S6 hold 6 tuples (3 per rank: 2 batches) and
    # finetune adds the P-GT of S7, S8's 4 tuples (5 per rank: 3 batches)
    for stage, steps in (("mv_pretrain", 2), ("sv_pretrain", 2), ("finetune", 3),
                         ("finetune_l1_only", 3)):
        rows = (runs / stage / "metrics.jsonl").read_text().splitlines()
        assert json.loads(rows[-1])["step"] == steps, stage
