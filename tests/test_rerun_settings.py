"""A rerun of `pose3d demo` or `pose3d experiment` over an existing folder reuses its studio and
runs only when they were made with the settings asked for (issue 26): another λ2, seed or
number of steps is refused in one line naming the difference, before any work, and nothing
in the folder changes. The same settings (W&B aside) reuse everything."""

from __future__ import annotations

import fnmatch
import os

import pytest
from omegaconf import OmegaConf
from test_demo import TINY
from train_helpers import TINY as TINY_CONFIG

from pose3d import cli, demo
from pose3d.train import checkpoint
from pose3d.train.config import load_config, to_dict, to_yaml
from pose3d.train.reuse import NOT_COMPARED, SettingsMismatch, check_run

# Every setting a rerun compares, with a value other than tiny.yaml's finetune config's: a run
# made with one of them differs in what it learns (or may: the loader's workers and on-device
# decoding order or round the inputs, fused Adam and compilation the arithmetic). Keys that
# may differ are pose3d.train.reuse.NOT_COMPARED, each commented there.
CHANGED = {
    "stage": "sv_pretrain",
    # the protocol: which roles train and evaluate
    "data.labeled_role": "unlabeled", "data.unlabeled_role": "labeled",
    "data.eval_role": "labeled", "data.use_pgt": False,
    "data.image_size": 96, "data.num_workers": 1, "data.batches_per_epoch": 3,
    "data.augment": True, "data.shuffle_buffer": 16, "data.decode_on_device": True,
    "data.augment_colour": True,
    # the architecture, depth bins included, of both models
    "model.sv.backbone": "resnet34", "model.sv.deconv_channels": 32, "model.sv.num_deconv": 3,
    "model.sv.depth_bins": 24, "model.sv.backbone_weights": "imagenet.pt",
    "model.mv.backbone": "resnet34", "model.mv.deconv_channels": 32, "model.mv.num_deconv": 3,
    "model.mv.depth_bins": 24, "model.mv.backbone_weights": "imagenet.pt",
    "optim.weight_decay": 1e-4, "optim.grad_clip_norm": 1.0, "optim.lr_schedule": "cosine",
    "optim.lr_scaling": "linear", "optim.lr_reference_batch": 16, "optim.fused": True,
    # each stage's epochs, batch and lr
    "optim.mv_pretrain.epochs": 3, "optim.mv_pretrain.batch_size": 4,
    "optim.mv_pretrain.lr": 3e-4, "optim.sv_pretrain.epochs": 3,
    "optim.sv_pretrain.batch_size": 4, "optim.sv_pretrain.lr": 3e-4,
    "optim.finetune.epochs": 3, "optim.finetune.batch_size": 4, "optim.finetune.lr": 3e-4,
    "optim.pgt.epochs": 2, "optim.pgt.batch_size": 8, "optim.pgt.lr": 1e-3,
    "loss.lambda_pose": 0.5, "loss.lambda_mv": 0.2, "loss.mv_mode": "scale_normalised",
    "loss.lambda_bone": 1e-3, "loss.depth_range_mm": 2500.0, "loss.lambda_3d": 0.01,
    "loss.lambda_2d": 2.0, "loss.lambda_heatmap": 3.0, "loss.heatmap_sigma": 2.0,
    "pgt.samples_per_shard": 16, "pgt.flip_test": True, "pgt.reject_px": 2.0,
    "pgt.max_residual_px": 2.0,
    "pgt.sharpen": 2.0,
    "run.seed": 1, "run.compile_mode": "max-autotune", "run.ddp": "off",
}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """The demo shrunk as in test_demo, run once: out folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(demo.PRESETS, "small", TINY)
        out = tmp_path_factory.mktemp("rerun") / "demo"
        assert cli.main(["demo", "--out", str(out), "--wandb", "disabled",
                         "--workers", "1"]) == 0
        yield out


def _state(folder) -> dict[str, tuple[int, bytes | None]]:
    """Every file's mtime, and the bytes of the config records."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns,
                                         p.read_bytes() if p.suffix == ".yaml" else None)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys, command: str, *expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pose3d {command}: error: ") and "\n" not in err, err
    assert "not reused" in err and all(e in err for e in expected), err


@pytest.mark.slow
@pytest.mark.parametrize("change, expected", [
    (["--lambda-mv", "3e-4"], ["finetune_ours", "loss.lambda_mv=0.0003 asked, 0.0001 there"]),
    (["--first-seed", "1"], ["seed=1 asked, 0 there"]),  # the studio was rendered with seed 0
    (["--steps-scale", "2"], ["mv_pretrain", "data.batches_per_epoch=4 asked, 2 there"]),
    (["--finetune-steps", "5"], ["finetune_", "data.batches_per_epoch=5 asked, 2 there"]),
])
def test_a_demo_rerun_with_other_settings_is_refused(tiny_demo, monkeypatch, capsys, change,
                                                     expected):
    monkeypatch.setitem(demo.PRESETS, "small", TINY)
    before = _state(tiny_demo)
    assert cli.main(["demo", "--out", str(tiny_demo), "--wandb", "disabled", "--workers", "1",
                     *change]) == 2
    _one_line(capsys, "demo", *expected)
    assert _state(tiny_demo) == before


@pytest.mark.slow
def test_a_demo_rerun_with_the_same_settings_reuses_every_run(tiny_demo, monkeypatch):
    monkeypatch.setitem(demo.PRESETS, "small", TINY)
    monkeypatch.setattr(demo, "synthesize", None)  # rendering again would fail
    ckpts = {p: p.stat().st_mtime_ns for p in (tiny_demo / "runs").glob("*/checkpoints/*.pt")}
    assert cli.main(["demo", "--out", str(tiny_demo), "--wandb", "offline",
                     "--workers", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts


@pytest.mark.slow
def test_an_experiment_rerun_with_other_settings_is_refused(tiny_demo, capsys):
    base = ["experiment", "--demo", str(tiny_demo), "--seeds", "1", "--arms", "Ours",
            "--device", "cpu"]
    assert cli.main([*base, "--steps", "2"]) == 0
    exp = tiny_demo / "experiment"
    before = _state(exp)
    capsys.readouterr()
    assert cli.main([*base, "--steps", "3"]) == 2
    _one_line(capsys, "experiment", "Ours/seed0", "data.batches_per_epoch=3 asked, 2 there")
    assert cli.main([*base, "--steps", "2", "--lambda-mv", "2e-4"]) == 2
    _one_line(capsys, "experiment", "loss.lambda_mv=0.0002 asked, 0.0001 there")
    # Base trained again after the run: the run no longer starts from it
    ckpt = tiny_demo / "runs" / "sv_pretrain" / "checkpoints" / "latest.pt"
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**12))
    try:
        assert cli.main([*base, "--steps", "2"]) == 2
        _one_line(capsys, "experiment", "model.sv.weights_path", "is newer than the run's")
    finally:
        os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _state(exp) == before
    assert cli.main([*base, "--steps", "2"]) == 0  # as asked: reused


def _flat_keys(tree: dict, prefix: str = "") -> list[str]:
    return [k for key, value in tree.items()
            for k in (_flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict)
                      else [f"{prefix}{key}"])]


@pytest.fixture(scope="module")
def finetune_config() -> dict:
    """tiny.yaml's finetune config, from Base at base.pt."""
    return to_dict(load_config(TINY_CONFIG, ["stage=finetune", "model.sv.weights_path=base.pt"]))


def _saved_run(folder, config: dict):
    """A run folder whose checkpoint records `config`; that config, asked again there."""
    asked = OmegaConf.create(config)  # writable: each case changes one key
    asked.run.out_dir = str(folder)
    checkpoint.save({"model": {}, "config": to_yaml(asked)}, folder / "checkpoints", 2)
    return asked


def test_the_table_covers_every_compared_setting(finetune_config):
    keys = _flat_keys(finetune_config)
    compared = {k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in NOT_COMPARED)}
    assert set(CHANGED) == compared  # a new setting: a row in CHANGED or in NOT_COMPARED


@pytest.mark.parametrize("key, value", CHANGED.items(), ids=list(CHANGED))
def test_a_rerun_with_any_other_setting_is_refused(finetune_config, tmp_path, key, value):
    cfg = _saved_run(tmp_path / "run", finetune_config)
    assert OmegaConf.select(cfg, key) != value
    OmegaConf.update(cfg, key, value)
    with pytest.raises(SettingsMismatch, match=f"^{tmp_path / 'run'} holds a run made with "
                                               f"other settings \\({key}={value!r} asked"):
        check_run(cfg)


def test_a_rerun_that_differs_only_where_and_how_it_runs_is_reused(finetune_config, tmp_path):
    cfg = _saved_run(tmp_path / "run", finetune_config)
    check_run(cfg)  # the same settings
    moved = {k: v for k, v in [
        ("data.root", "elsewhere/data"), ("data.pgt_root", "elsewhere/pgt"),
        ("model.sv.weights_path", "elsewhere/base.pt"), ("model.mv.weights_path", "mv.pt"),
        ("model.finetune_init", "elsewhere/latest.pt"), ("model.sv_init_from_mv", "mv.pt"),
        ("pgt.checkpoint", "elsewhere/mv.pt"), ("run.root", "elsewhere"),
        ("run.resume", "none"), ("run.device", "cuda"), ("run.amp", False),
        ("run.amp_cpu", True), ("run.channels_last", False), ("run.compile", True),
        ("run.dist_timeout_s", 60), ("run.progress", True), ("run.wandb", "offline"),
        ("run.wandb_project", "other"), ("run.wandb_name", "other"),
        ("run.log_every_steps", 7), ("run.image_every_steps", 7),
        ("run.ckpt_every_steps", 7), ("run.keep_checkpoints", 7)]}
    for key, value in moved.items():
        assert OmegaConf.select(cfg, key) != value, key
        OmegaConf.update(cfg, key, value)
    check_run(cfg)
