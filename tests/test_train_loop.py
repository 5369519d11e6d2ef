"""The training loop with a stand-in stage (tests/toy_stage.py): resume, NaN, bad input,
DDP gradients, and a two-process torchrun run that loses a worker and still finishes."""

import argparse
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from toy_stage import ToyNet, ToyStage, toy_batch
from train_helpers import REPO, TINY, free_port, torchrun, wandb_service_of_another_process

from pose3d.train import checkpoint
from pose3d.train.cli import EXIT_BAD_INPUT, EXIT_NON_FINITE, add_arguments, main
from pose3d.train.config import load_config
from pose3d.train.distributed import DistInfo
from pose3d.train.loop import train_step
from pose3d.train.stage_base import StepContext


def run_toy(root: Path, *overrides: str, stage: ToyStage | None = None) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--config", TINY, f"run.root={root}", *overrides])
    return main(args, stage=stage or ToyStage())


def logged_steps(root: Path) -> list[int]:
    lines = (root / "sv_pretrain" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def test_run_writes_checkpoints_and_metrics(tmp_path):
    assert run_toy(tmp_path) == 0
    ckpts = tmp_path / "sv_pretrain" / "checkpoints"
    assert [p.name for p in checkpoint.step_checkpoints(ckpts)] == ["step_00000002.pt",
                                                                    "step_00000004.pt"]
    last = checkpoint.load(ckpts / "latest.pt")
    assert (last["step"], last["epoch"], last["step_in_epoch"]) == (4, 2, 0)
    assert set(last) >= {"model", "optimizer", "scaler", "rng", "config", "fingerprint"}
    assert logged_steps(tmp_path) == [1, 2, 3, 4]
    row = json.loads((tmp_path / "sv_pretrain" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"train/loss", "train/lr", "perf/images_per_s", "perf/data_wait_fraction"} <= set(row)
    assert 0.0 <= row["perf/data_wait_fraction"] <= 1.0


def test_run_threads_fixes_the_count_and_each_logged_step_names_it(tmp_path, monkeypatch):
    saved = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # run.threads wins over the environment
    try:
        assert run_toy(tmp_path, "optim.sv_pretrain.epochs=1", "run.threads=2") == 0
    finally:
        torch.set_num_threads(saved)
    lines = (tmp_path / "sv_pretrain" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["perf/threads"] for line in lines] == [2, 2]


def test_cosine_schedule_sets_each_steps_learning_rate(tmp_path):
    # 2 epochs x 2 batches at lr 1e-3 (tiny.yaml): cosine over 4 steps, from the full lr
    assert run_toy(tmp_path, "optim.lr_schedule=cosine") == 0
    lines = (tmp_path / "sv_pretrain" / "metrics.jsonl").read_text().splitlines()
    lrs = [json.loads(line)["train/lr"] for line in lines]
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert lrs == pytest.approx(expected)


def test_resume_latest_continues_from_the_saved_step(tmp_path):
    assert run_toy(tmp_path, "optim.sv_pretrain.epochs=1") == 0
    stage = ToyStage()
    assert run_toy(tmp_path, "optim.sv_pretrain.epochs=2", "--resume", "latest",
                   stage=stage) == 0
    assert logged_steps(tmp_path) == [1, 2, 3, 4]
    assert stage.loaded_batches == [(1, 0), (1, 1)]  # epoch 0 is not trained again


def _assert_same_state(a: dict, b: dict) -> None:
    """Model weights and Adam moments of two checkpoints equal bit for bit."""
    assert a["model"].keys() == b["model"].keys()
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) == len(list(ToyNet(16).parameters()))
    for i in sa:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key])), (i, key)


def test_resumed_run_ends_with_the_weights_and_adam_state_of_an_uninterrupted_one(tmp_path):
    # 2 epochs in one go, against 1 epoch then a resume (at an epoch end) and, separately,
    # a stop after step 3 then a resume mid-epoch: the same model and optimiser at step 4.
    args = ("optim.sv_pretrain.epochs=2", "run.ckpt_every_steps=1", "run.keep_checkpoints=9")
    assert run_toy(tmp_path / "whole", *args) == 0
    whole = tmp_path / "whole" / "sv_pretrain" / "checkpoints"
    assert run_toy(tmp_path / "split", "optim.sv_pretrain.epochs=1") == 0
    assert run_toy(tmp_path / "split", "optim.sv_pretrain.epochs=2", "--resume", "latest") == 0
    resumed = checkpoint.load(tmp_path / "split" / "sv_pretrain" / "checkpoints" / "latest.pt")
    end = checkpoint.load(whole / "latest.pt")
    assert resumed["step"] == end["step"] == 4
    _assert_same_state(resumed, end)
    # it is the training that made them equal: step 2's state differs from step 4's
    assert not torch.equal(checkpoint.load(whole / "step_00000002.pt")["model"]["head.bias"],
                           end["model"]["head.bias"])

    # mid-epoch: keep only the step-3 checkpoint of the whole run and resume from it
    mid = tmp_path / "mid" / "sv_pretrain" / "checkpoints"
    mid.mkdir(parents=True)
    step3 = checkpoint.load(whole / "step_00000003.pt")
    checkpoint.save(step3, mid, step=3)
    assert run_toy(tmp_path / "mid", *args, "--resume", "latest") == 0
    _assert_same_state(checkpoint.load(mid / "latest.pt"), end)


def test_gradient_clipping_bounds_the_gradient_adam_steps_with(tmp_path):
    # One Adam step from the same start with lr 0 (the initial weights) and with lr 1e-3:
    # Adam's first step moves each weight by lr * g / (|g| + eps), which gives back the
    # gradient g it used. With a clip norm c far below the raw gradient norm, that
    # gradient's norm must be c.
    clip, lr, eps = 1e-7, 1e-3, 1e-8
    base = ("optim.sv_pretrain.epochs=1", "data.batches_per_epoch=1",
            "optim.weight_decay=0", f"optim.grad_clip_norm={clip}")
    assert run_toy(tmp_path / "start", *base, "optim.sv_pretrain.lr=0") == 0
    assert run_toy(tmp_path / "step", *base, f"optim.sv_pretrain.lr={lr}") == 0
    weights = [checkpoint.load(tmp_path / d / "sv_pretrain" / "checkpoints" / "latest.pt")
               ["model"] for d in ("start", "step")]
    grads = []
    for name, w0 in weights[0].items():
        move = (w0.double() - weights[1][name].double()).abs()
        assert (move < lr).all(), name
        grads.append(eps * move / (lr - move))  # |g| from |move| = lr |g| / (|g| + eps)
    norm = torch.cat([g.flatten() for g in grads]).norm().item()
    assert norm == pytest.approx(clip, rel=0.02)
    assert torch.cat([g.flatten() for g in grads]).max() > 0


def test_resume_latest_without_a_checkpoint_is_an_error(tmp_path, capsys):
    assert run_toy(tmp_path, "--resume", "latest") == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no checkpoint in" in err


def test_nan_loss_stops_with_step_and_keys_and_keeps_the_last_good_checkpoint(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("POSE3D_TEST_NAN_AT_STEP", "3")
    args = ("optim.sv_pretrain.epochs=1", "data.batches_per_epoch=4", "run.ckpt_every_steps=1")
    assert run_toy(tmp_path, *args) == EXIT_NON_FINITE
    err = capsys.readouterr().err.strip()
    assert "non-finite loss at step 3" in err and "toy-e0-r0-b2-0" in err
    good = checkpoint.load(tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt")
    assert (good["step"], good["step_in_epoch"]) == (2, 2)
    assert all(torch.isfinite(v).all() for v in good["model"].values())

    # Without the poison the run resumes mid-epoch, at the batch after the last good step.
    monkeypatch.delenv("POSE3D_TEST_NAN_AT_STEP")
    stage = ToyStage()
    assert run_toy(tmp_path, *args, stage=stage) == 0
    assert stage.loaded_batches == [(0, 0), (0, 1), (0, 2), (0, 3)]  # two skipped, two trained
    assert logged_steps(tmp_path)[-2:] == [3, 4]


def test_checkpoint_of_another_model_fails_before_any_work(tmp_path, capsys):
    assert run_toy(tmp_path / "a", "optim.sv_pretrain.epochs=1") == 0
    weights = tmp_path / "a" / "sv_pretrain" / "checkpoints" / "latest.pt"
    stage = ToyStage()
    code = run_toy(tmp_path / "b", f"model.sv.weights_path={weights}",
                   "model.sv.deconv_channels=8", stage=stage)
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "deconv_channels=16" in err and "deconv_channels=8" in err
    assert stage.loaded_batches == [] and not (tmp_path / "b" / "sv_pretrain").exists()


def _grads_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(ToyNet(8))
    cfg = load_config(TINY)
    batch = toy_batch(0, 0, 0, 0, 4)  # the global batch; this rank takes its half
    half = {k: v[rank * 2:(rank + 1) * 2] for k, v in batch.items()}
    info = DistInfo(rank, world, rank, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_step(model, ToyStage(), half, StepContext(info.device, False), cfg, scaler, 1, info)
    if rank == 0:
        torch.save({n: p.grad for n, p in model.module.named_parameters()}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gradients_equal_one_process_gradients(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.spawn(_grads_worker, args=(2, free_port(), out), nprocs=2, join=True)
    two = torch.load(out)

    torch.manual_seed(0)
    model = ToyNet(8)
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_step(model, ToyStage(), toy_batch(0, 0, 0, 0, 4), StepContext(info.device, False),
               load_config(TINY), scaler, 1, info)
    for name, p in model.named_parameters():
        torch.testing.assert_close(two[name], p.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_torchrun_worker_killed_mid_run_resumes_and_finishes_with_wandb_offline(tmp_path):
    """Rank 0 dies abruptly after step 3, its W&B run unfinished, in a launch whose
    environment names another process's W&B service (as `pose3d demo` launches workers
    after its evaluations used W&B). Had the worker joined that service, the run would stay
    open there and the restarted rank 0 could never resume it ("run ID ... is in use")."""
    marker = tmp_path / "crashed"
    with wandb_service_of_another_process(tmp_path / "launcher") as service:
        proc = torchrun(2, [str(REPO / "tests/train_toy.py"), "--config", TINY,
                            f"run.root={tmp_path}", "optim.sv_pretrain.epochs=3"],
                        {"POSE3D_TEST_CRASH_AT_STEP": "3", "POSE3D_TEST_CRASH_MARKER": str(marker),
                         "WANDB_MODE": "offline", "WANDB_SERVICE": service},
                        max_restarts=1)
    # the whole stderr: a failed restart shows rank 0's own error far above rank 1's
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-30000:]
    assert marker.exists()  # rank 0 did die after step 3
    out = tmp_path / "sv_pretrain"
    assert checkpoint.load(out / "checkpoints" / "latest.pt")["step"] == 6
    steps = logged_steps(tmp_path)
    assert steps == [1, 2, 3, 3, 4, 5, 6]  # step 3 again: resumed from the step-2 checkpoint

    runs = list((out / "wandb").glob("offline-run-*"))
    assert runs, "no W&B offline run directory"
    data = b"".join(p.read_bytes() for r in runs for p in r.glob("run-*.wandb"))
    for key in (b"train/loss", b"train/lr", b"perf/images_per_s", b"perf/data_wait_fraction",
                b"train/predictions", b"lambda_mv"):
        assert key in data, key
    run_ids = {r.name.rsplit("-", 1)[-1] for r in runs}
    assert len(run_ids) == 1  # the restarted workers append to the same W&B run


@pytest.mark.slow
def test_compiled_model_saves_plain_state_dict_keys(tmp_path):
    assert run_toy(tmp_path, "run.compile=true", "optim.sv_pretrain.epochs=1") == 0
    ckpt = checkpoint.load(tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt")
    assert sorted(ckpt["model"]) == sorted(ToyNet(16).state_dict())  # no _orig_mod. prefix


def test_fused_switch_reaches_the_optimizer(tmp_path):
    def saved_group(root: Path) -> dict:
        ckpt = checkpoint.load(root / "sv_pretrain" / "checkpoints" / "latest.pt")
        return ckpt["optimizer"]["param_groups"][0]

    assert run_toy(tmp_path / "plain", "optim.sv_pretrain.epochs=1") == 0
    assert run_toy(tmp_path / "fused", "optim.sv_pretrain.epochs=1", "optim.fused=true") == 0
    assert saved_group(tmp_path / "plain")["foreach"] is None  # torch picks
    assert saved_group(tmp_path / "fused")["foreach"] is True  # the CPU's multi-tensor step
    # on CUDA the switch asks for the fused kernel (Adam accepts it for CPU tensors too)
    from pose3d.train.optimizer import make_optimizer

    cfg = load_config(TINY, ["optim.fused=true"])
    adam = make_optimizer(cfg, ToyNet(4).parameters(), torch.device("cuda"))
    assert adam.param_groups[0]["fused"] is True and not adam.param_groups[0]["foreach"]


def test_linear_lr_scaling_reaches_the_steps(tmp_path):
    # tiny.yaml: 2 tuples a step at lr 1e-3; a reference batch of 1 tuple doubles it
    assert run_toy(tmp_path, "optim.sv_pretrain.epochs=1", "optim.lr_scaling=linear",
                   "optim.lr_reference_batch=1") == 0
    lines = (tmp_path / "sv_pretrain" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["train/lr"] for line in lines] == pytest.approx([2e-3, 2e-3])


def test_compile_mode_reaches_torch_compile(tmp_path, monkeypatch):
    seen = []

    def fake_compile(model, **kwargs):
        seen.append(kwargs)
        return model
    monkeypatch.setattr(torch, "compile", fake_compile)
    assert run_toy(tmp_path, "optim.sv_pretrain.epochs=1", "run.compile=true",
                   "run.compile_mode=max-autotune-no-cudagraphs") == 0
    assert seen == [{"mode": "max-autotune-no-cudagraphs"}]


@pytest.mark.slow
def test_compiled_steps_give_the_losses_of_eager_steps(tmp_path):
    # same seed: same initial weights and batches; inductor's fused kernels round differently
    losses = {}
    for name, compiled in (("eager", "false"), ("compiled", "true")):
        assert run_toy(tmp_path / name, f"run.compile={compiled}") == 0
        lines = (tmp_path / name / "sv_pretrain" / "metrics.jsonl").read_text().splitlines()
        losses[name] = [json.loads(line)["train/loss"] for line in lines]
    assert len(losses["eager"]) == 4
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4, abs=1e-6)
    assert len(set(losses["eager"])) > 1  # the weights moved between steps


@pytest.mark.slow
def test_ddp_always_joins_a_process_group_of_one(tmp_path):
    proc = torchrun(1, [str(REPO / "tests/train_toy.py"), "--config", TINY,
                        f"run.root={tmp_path}", "optim.sv_pretrain.epochs=1", "run.ddp=always"],
                    {})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DDP over 1 process(es), backend gloo" in proc.stdout
    assert checkpoint.load(tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt")["step"] == 2


def test_a_resumed_run_steps_with_its_own_fused_setting_not_the_checkpoints(tmp_path):
    assert run_toy(tmp_path, "optim.sv_pretrain.epochs=1") == 0
    assert run_toy(tmp_path, "optim.sv_pretrain.epochs=2", "optim.fused=true",
                   "--resume", "latest") == 0
    ckpt = checkpoint.load(tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 4 and ckpt["optimizer"]["param_groups"][0]["foreach"] is True
