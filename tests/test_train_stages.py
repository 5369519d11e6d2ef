"""The four stages on a tiny synthetic dataset: each in one process on the test device, one
through the multi-node launcher in two processes (tests/test_recipe.py runs all four in two),
and bad input failing in one line before any work."""

import argparse
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from train_data import write_pgt_folder, write_tiny_dataset
from train_helpers import REPO, TINY, free_port

from pose3d.train import checkpoint
from pose3d.train.cli import EXIT_BAD_INPUT, add_arguments, main
from pose3d.train.config import initial_weights, load_config
from pose3d.train.distributed import DistInfo
from pose3d.train.registry import make_stage
from pose3d.train.stage_base import StepContext, batch_to

SIZE = 32  # the smallest input the ResNet trunk takes (stride 32): seconds per stage on CPU


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "data"
    write_tiny_dataset(out, frames=6, image_size=SIZE)
    return out


def overrides(data, root, stage, *extra):
    return [f"data.root={data}", f"data.image_size={SIZE}", f"run.root={root}",
            f"stage={stage}", "data.batches_per_epoch=2", f"optim.{stage}.epochs=1",
            f"optim.{stage}.batch_size=1", *extra]


def run_cli(*args: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return main(parser.parse_args(["--config", TINY, *args]))


def run_stage_with_launcher(data, root, stage, launcher: str):
    """Two gloo workers on this machine through a launch/ script."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "NPROC": "2", "NPROC_PER_NODE": "2", "NNODES": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "MAX_RESTARTS": "0"}
    proc = subprocess.run(["bash", str(REPO / "launch" / launcher), TINY,
                           *overrides(data, root, stage)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_a_stage_runs_in_two_processes_through_the_multi_node_launcher(dataset, tmp_path):
    """launch/multi_node.sh on one node; the recipe (tests/test_recipe.py) runs every stage
    in two processes through launch/single_node.sh."""
    run_stage_with_launcher(dataset, tmp_path, "mv_pretrain", "multi_node.sh")
    last = checkpoint.load(tmp_path / "mv_pretrain" / "checkpoints" / "latest.pt")
    assert (last["step"], last["epoch"], last["world_size"]) == (2, 1, 2)
    assert len(last["rng"]) == 2  # one RNG state per rank
    assert list((tmp_path / "mv_pretrain" / "images").glob("*.png"))


def test_finetune_starts_from_sv_pretrains_latest_checkpoint_by_default(tmp_path):
    cfg = load_config(TINY, overrides(tmp_path / "data", tmp_path, "finetune"))  # paths only
    assert initial_weights(cfg).path == str(
        tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt")


@pytest.mark.slow
def test_every_stage_runs_in_one_process_on_the_test_device(dataset, tmp_path, device):
    """The trainer's own path on `device`: on a GPU bf16 autocast and channels_last (the
    defaults), the P-GT pass under autocast, checkpoints written and read back."""
    for stage in ("mv_pretrain", "pgt", "sv_pretrain", "finetune"):
        assert run_cli(*overrides(dataset, tmp_path, stage), f"run.device={device.type}") == 0
    report = json.loads((tmp_path / "pgt" / "pgt_report.json").read_text())
    assert report["scored"] > 0 and math.isfinite(report["mpjpe_mm"])
    for stage in ("mv_pretrain", "sv_pretrain", "finetune"):
        last = checkpoint.load(tmp_path / stage / "checkpoints" / "latest.pt")
        assert last["step"] == 2, stage
        assert all(torch.isfinite(v).all() for v in last["model"].values()
                   if v.is_floating_point()), stage
        rows = [json.loads(r) for r in (tmp_path / stage / "metrics.jsonl").read_text()
                .splitlines()]
        assert rows and all(math.isfinite(r["train/loss"]) for r in rows), stage


def _one_step(dataset, tmp_path, stage_name, *extra, device="cpu"):
    cfg = load_config(TINY, overrides(dataset, tmp_path, stage_name, "optim.finetune."
                                      "batch_size=2", *extra))
    stage = make_stage(stage_name)
    model = stage.build_model(cfg)
    stage.prepare(cfg, model)
    device = torch.device(device)
    info = DistInfo(0, 1, 0, device)
    batch = next(iter(stage.train_loader(cfg, 0, info)))
    return stage.step(model.to(device), batch_to(batch, device), StepContext(device, False))


def test_finetune_weighs_the_consistency_loss_by_lambda_mv(dataset, tmp_path, device):
    pgt = f"data.pgt_root={write_pgt_folder(dataset, tmp_path / 'pgt', offset_mm=30.0)}"
    l1_only = _one_step(dataset, tmp_path, "finetune", pgt, "loss.lambda_mv=0", device=device)
    torch.testing.assert_close(l1_only.loss, l1_only.metrics["train/loss_pose"])
    ours = _one_step(dataset, tmp_path, "finetune", pgt, "loss.lambda_mv=0.5",
                     "loss.lambda_pose=2", device=device)
    m = ours.metrics
    assert m["train/loss_mv"] > 0
    torch.testing.assert_close(ours.loss, 2 * m["train/loss_pose"] + 0.5 * m["train/loss_mv"])


def test_missing_shard_folder_is_one_line_before_any_work(tmp_path, capsys):
    code = run_cli(*overrides(tmp_path / "nowhere", tmp_path / "run", "sv_pretrain"))
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.root: no such shard folder" in err and "nowhere" in err
    assert not (tmp_path / "run").exists()


def test_image_size_must_match_the_shards(dataset, tmp_path, capsys):
    code = run_cli(*overrides(dataset, tmp_path, "sv_pretrain"), "data.image_size=64")
    assert code == EXIT_BAD_INPUT
    assert "holds 32 px images but data.image_size is 64" in capsys.readouterr().err


def test_pgt_with_a_single_view_checkpoint_is_one_line_before_any_work(dataset, tmp_path,
                                                                       capsys):
    sv, _ = _save_fresh_model(dataset, tmp_path, "sv_pretrain", "sv")
    code = run_cli(*overrides(dataset, tmp_path, "pgt"), f"pgt.checkpoint={sv}")
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a single_view model" in err and "not a multi_view" in err
    assert not (tmp_path / "pgt_shards").exists() and not (tmp_path / "pgt").exists()


def test_loader_workers_start_after_opencv_ran_in_the_trainer(dataset):
    # Without fork_safe_opencv a large resize (a W&B picture) leaves OpenCV's thread pool in
    # the main process and the next epoch's forked DataLoader workers hang on its lock.
    code = f"""
import cv2, numpy as np
from pose3d.train.loop import fork_safe_opencv
from pose3d.data.loader import make_train_loader
fork_safe_opencv()
for _ in range(3):
    cv2.resize(np.zeros((2000, 2000, 3), np.uint8), (1000, 1000))
for batch in make_train_loader({str(dataset)!r}, 1, num_workers=2, batches_per_epoch=2):
    pass
print("done")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-2000:]


def _save_fresh_model(dataset, tmp_path, stage_name, folder):
    cfg = load_config(TINY, overrides(dataset, tmp_path, stage_name))
    stage = make_stage(stage_name)
    model = stage.build_model(cfg)
    path = checkpoint.save({"model": model.state_dict(),
                            "fingerprint": checkpoint.fingerprint(model, stage.arch(cfg))},
                           tmp_path / folder, step=1)
    return path, model


def _initial_model(dataset, tmp_path, stage_name, *extra):
    cfg = load_config(TINY, overrides(dataset, tmp_path, stage_name, *extra))
    stage = make_stage(stage_name)
    stage.check_inputs(cfg)
    model = stage.build_model(cfg)
    stage.load_initial_weights(cfg, model, checkpoint.fingerprint(model, stage.arch(cfg)))
    return model


def test_sv_pretrain_starts_from_the_multi_view_checkpoint(dataset, tmp_path):
    mv_path, mv = _save_fresh_model(dataset, tmp_path, "mv_pretrain", "mv")
    sv = _initial_model(dataset, tmp_path, "sv_pretrain", f"model.sv_init_from_mv={mv_path}")
    for name, value in mv.trunk.state_dict().items():
        assert torch.equal(sv.trunk.state_dict()[name], value), name
    torch.testing.assert_close(sv.head.final.bias.view(17, -1),
                               mv.head.final.bias[:, None].expand(17, sv.depth_bins))
    # an explicit model.sv.weights_path wins, and fine-tuning never starts from F_mv
    sv_path, sv_saved = _save_fresh_model(dataset, tmp_path, "sv_pretrain", "sv")
    for stage in ("sv_pretrain", "finetune"):
        model = _initial_model(dataset, tmp_path, stage, f"model.sv_init_from_mv={mv_path}",
                               f"model.sv.weights_path={sv_path}", "data.use_pgt=false")
        assert torch.equal(model.trunk.conv1.weight, sv_saved.trunk.conv1.weight)


def test_sv_init_from_a_missing_or_single_view_checkpoint_is_one_line(dataset, tmp_path,
                                                                       capsys):
    code = run_cli(*overrides(dataset, tmp_path, "sv_pretrain"),
                   f"model.sv_init_from_mv={tmp_path / 'nothing.pt'}")
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.sv_init_from_mv: no such checkpoint" in err
    sv_path, _ = _save_fresh_model(dataset, tmp_path, "sv_pretrain", "sv")
    code = run_cli(*overrides(dataset, tmp_path, "sv_pretrain"), f"model.sv_init_from_mv={sv_path}")
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a multi-view model" in err


def test_mv_pretrain_adds_the_heatmap_term_by_lambda_heatmap(dataset, tmp_path, device):
    plain = _one_step(dataset, tmp_path, "mv_pretrain", device=device)
    assert "train/loss_heatmap" not in plain.metrics
    torch.manual_seed(0)
    off = _one_step(dataset, tmp_path, "mv_pretrain", "loss.lambda_heatmap=0", device=device)
    torch.manual_seed(0)
    on = _one_step(dataset, tmp_path, "mv_pretrain", "loss.lambda_heatmap=0.5",
                   device=device)
    assert on.metrics["train/loss_heatmap"] > 0
    torch.testing.assert_close(on.loss, off.loss + 0.5 * on.metrics["train/loss_heatmap"])


def test_amp_cpu_trains_the_teacher_and_labels_in_bf16(dataset, tmp_path, monkeypatch):
    """run.amp_cpu=true reaches the autocast of the training step and of the P-GT pass (the
    CPU's bf16 support forced on, so that the path runs on any CPU), and both still give
    finite losses and P-GT."""
    import pose3d.device

    asked = []
    monkeypatch.setattr(pose3d.device, "cpu_has_native_bf16", lambda: asked.append(1) or True)
    for stage in ("mv_pretrain", "pgt"):
        assert run_cli(*overrides(dataset, tmp_path, stage), "run.device=cpu",
                       "run.amp_cpu=true") == 0
        assert asked, f"{stage} never asked for CPU bf16"
        asked.clear()
    rows = [json.loads(r) for r in (tmp_path / "mv_pretrain" / "metrics.jsonl").read_text()
            .splitlines()]
    assert rows and all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    report = json.loads((tmp_path / "pgt" / "pgt_report.json").read_text())
    assert report["scored"] > 0 and math.isfinite(report["mpjpe_mm"])
