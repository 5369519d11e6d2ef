"""The main job end to end, shrunk: a few tuples, a few steps per stage."""

import argparse
import json

import pytest

from pose3d import cli, demo

TINY = {
    "studio": dict(image_size=64, clips_per_action=1, frames_per_clip=4, frame_step=2,
                   actions=("walking", "waving")),
    "overrides": [
        "data.image_size=64", "data.num_workers=0", "data.augment=false",
        "model.sv.backbone=resnet10", "model.sv.deconv_channels=16", "model.sv.num_deconv=2",
        "model.sv.depth_bins=8", "model.mv.backbone=resnet10", "model.mv.deconv_channels=16",
        "model.mv.num_deconv=2", "optim.mv_pretrain.batch_size=2",
        "optim.sv_pretrain.batch_size=2", "optim.finetune.batch_size=2",
        "optim.pgt.batch_size=4", "run.ckpt_every_steps=2", "run.progress=false",
        # one epoch of `batches` steps per stage, as in the real presets
        "optim.mv_pretrain.epochs=1", "optim.sv_pretrain.epochs=1", "optim.finetune.epochs=1",
    ],
    "batches": {"mv_pretrain": 2, "sv_pretrain": 2, "finetune": 2},
    "clips": {"h36m": {}, "s1": {}},
}


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo.PRESETS, "small", TINY)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--wandb", "offline", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| camera | Base | GT-only | L1-only | Oracle | Ours |" in printed
    assert "P-GT MPJPE" in printed and "the teacher's P-GT delivers" in printed
    summary = json.loads((out / "demo_summary.json").read_text())
    assert set(summary["mpjpe_mm"]) == {"Base", "GT-only", "L1-only", "Oracle", "Ours"}
    assert all(0 < v < 5000 for v in summary["mpjpe_mm"].values())
    assert summary["pgt"]["scored"] > 0 and summary["pgt"]["mpjpe_mm"] > 0
    report = json.loads((out / "eval" / "report.json").read_text())
    assert set(report["Ours"]["camera"]) == {"cam1", "cam2", "cam3", "cam4", "all"}
    assert len(list((out / "eval" / "figures").glob("*.png"))) == 5 * 4
    for run in ("mv_pretrain", "sv_pretrain", "finetune_gt", "finetune_l1", "finetune_oracle",
                "finetune_ours"):
        assert (out / "runs" / run / "checkpoints" / "latest.pt").is_file()
    # the learning curves: a point per kept step checkpoint of Base (every step of 2) and of
    # each fine-tuning, on the eval tuples: the last point is the table's evaluation
    assert [p["step"] for p in summary["curves"]["Base"]] == [1, 2]
    assert [p["step"] for p in summary["curves"]["GT-only"]] == [1, 2]
    for name in ("Base", "GT-only", "Ours"):
        assert summary["curves"][name][-1]["mpjpe"] == pytest.approx(
            report[name]["camera"]["all"]["mpjpe"], rel=1e-6)
    assert all(0 < p["mpjpe"] < 5000 for c in summary["curves"].values() for p in c)
    assert (out / "eval" / "curves.png").stat().st_size > 1000
    # the labeled subject of the default protocol (s1) is S1 alone; P-GT covers four people
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["roles"]["labeled"]["subjects"] == ["S1"]
    assert manifest["roles"]["unlabeled"]["subjects"] == ["S5", "S6", "S7", "S8"]
    assert list((out / "runs").rglob("wandb/offline-run-*"))  # W&B offline when asked
    # the diagnostics: Base on held-out clips of the labeled people (S1 only, as an eval
    # role), the teacher on every role; the gap is eval minus held-out
    diag = summary["diagnostics"]
    heldout = json.loads((out / "data_heldout" / "manifest.json").read_text())
    assert list(heldout["roles"]) == ["eval"] and heldout["roles"]["eval"]["subjects"] == ["S1"]
    assert diag["base"]["gap_mm"] == pytest.approx(
        diag["base"]["eval_mm"] - diag["base"]["heldout_labeled_mm"])
    assert set(diag["teacher"]) == {"labeled", "heldout_labeled", "unlabeled", "eval"}
    assert diag["teacher"]["unlabeled"] == summary["pgt"]["mpjpe_mm"]
    assert all(0 < v < 5000 for v in diag["teacher"].values())
    assert summary["teacher_share"]["oracle_gain_mm"] == pytest.approx(
        summary["mpjpe_mm"]["Oracle"] - summary["mpjpe_mm"]["GT-only"])

    # evaluating a checkpoint of the wrong model, or none at all, is a clear error
    from pose3d.eval.cli import parse_checkpoints
    from pose3d.eval.predict import load_single_view
    from pose3d.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="MultiViewTriangulationModel"):
        load_single_view(out / "runs" / "mv_pretrain" / "checkpoints" / "latest.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        parse_checkpoints([f"Base={tmp_path / 'missing.pt'}"])

    # Run again over the same folder (the GPU run's rerun of one phase does): the data is not
    # rendered again and no finished stage trains again (its checkpoints stay as they were).
    ckpts = sorted((out / "runs").glob("*/checkpoints/*.pt"))
    written = {p: p.stat().st_mtime_ns for p in ckpts}
    monkeypatch.setattr(demo, "synthesize", None)  # calling it would fail
    assert cli.main(["demo", "--out", str(out), "--wandb", "disabled", "--workers", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in ckpts} == written
    assert sorted((out / "runs").glob("*/checkpoints/*.pt")) == ckpts


def test_demo_names_bad_arms_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--seeds", "2", "--arms", "Theirs"]) == 2
    assert "unknown arm 'Theirs'" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(out), "--arms", "Ours"]) == 2
    assert "--seeds K > 1" in capsys.readouterr().err
    assert not out.exists()


def test_the_cpu_preset_gives_the_teacher_more_labeled_clips_and_jittered_views(tmp_path):
    """The default demo: the roles that train render more clips than eval; mv_pretrain
    alone trains on augmented views (its override comes after the common one); every
    training stage asks for CPU bf16."""
    from pose3d.train.config import load_config

    args = argparse.Namespace(full=False, first_seed=0, wandb="disabled", steps_scale=1.0, seeds=1,
                              lambda_mv=None, lambda_bone=None, protocol="h36m")
    studio = demo.studio_config(args)
    assert studio.clips_of("labeled") == studio.clips_of("unlabeled") > studio.clips_of("eval")
    data = tmp_path / "data"
    cfgs = {label: load_config(None, overrides)
            for label, overrides in demo.stage_plan(args, tmp_path / "runs", data)}
    assert cfgs["mv_pretrain"].data.augment
    assert not any(cfg.data.augment for label, cfg in cfgs.items() if label != "mv_pretrain")
    assert all(cfg.run.amp_cpu for cfg in cfgs.values())
    assert cfgs["pgt"].pgt.sharpen == 2.0


def test_finetune_steps_sets_every_fine_tuning_and_nothing_else(tmp_path):
    from pose3d.train.config import load_config

    def plan(**changes):
        args = argparse.Namespace(**{
            "full": False, "first_seed": 0, "wandb": "disabled", "steps_scale": 1.0,
            "seeds": 1, "lambda_mv": None, "lambda_bone": None, "protocol": "s1",
            "finetune_steps": None, **changes})
        return {label: load_config(None, overrides).data.batches_per_epoch
                for label, overrides in demo.stage_plan(args, tmp_path / "runs", tmp_path)
                if label != "pgt"}, demo.paired_steps(args)

    default, default_paired = plan()
    longer, longer_paired = plan(finetune_steps=1350)
    assert default_paired == default["L1-only"] == demo.SMALL["batches"]["finetune"]
    assert longer_paired == 1350
    assert longer == {k: 1350 if k in demo.FINETUNE_DIRS else v for k, v in default.items()}
    assert set(demo.FINETUNE_DIRS) <= set(longer)


def test_the_gpu_preset_keeps_its_own_teacher_settings(tmp_path):
    """--full takes none of the CPU preset's teacher settings (measured on the CPU only)."""
    from pose3d.train.config import load_config

    args = argparse.Namespace(full=True, first_seed=0, wandb="disabled", steps_scale=1.0, seeds=1,
                              lambda_mv=None, lambda_bone=None, protocol="s1")
    cfgs = {label: load_config(None, overrides)
            for label, overrides in demo.stage_plan(args, tmp_path / "runs", tmp_path / "d")}
    assert not any(cfg.data.augment for cfg in cfgs.values())
    assert cfgs["pgt"].pgt.sharpen == 1.0 and not cfgs["mv_pretrain"].run.amp_cpu


@pytest.mark.parametrize("full", [False, True])
def test_the_protocols_differ_in_who_is_labeled_not_in_how_much(full):
    """s1 labels one person where h36m labels three, with as many labeled tuples (clips per
    action x subjects), P-GT on more people; both evaluate on S9 and S11."""
    def studio(protocol):
        return demo.studio_config(argparse.Namespace(full=full, first_seed=0, protocol=protocol))

    s1, h36m = studio("s1"), studio("h36m")
    assert s1.roles["labeled"] == ("S1",) and len(h36m.roles["labeled"]) == 3
    assert s1.roles["eval"] == h36m.roles["eval"] == ("S9", "S11")
    assert set(s1.roles["unlabeled"]) == {"S5", "S6", "S7", "S8"}
    for role in ("labeled", "unlabeled"):
        assert (s1.clips_of(role) * len(s1.roles[role])
                >= h36m.clips_of(role) * len(h36m.roles[role]))
    assert s1.clips_of("labeled") == 3 * h36m.clips_of("labeled")


def test_the_demo_dresses_its_people_only_when_asked(tmp_path):
    """--look picks the studio's look (default: limbs coloured by side, which this preset's
    teacher reads); a rerun over a studio of the other look is refused before any work."""
    from pose3d.data.synth import config_record
    from pose3d.train.reuse import SettingsMismatch, check_dataset

    def studio(*flags):
        return demo.studio_config(cli.build_parser("demo").parse_args(["demo", *flags]))

    assert studio().look == "sides" and studio("--look", "clothing").look == "clothing"
    (tmp_path / "manifest.json").write_text(json.dumps({"config": config_record(studio())}))
    check_dataset(tmp_path, config_record(studio()))
    with pytest.raises(SettingsMismatch, match="look"):
        check_dataset(tmp_path, config_record(studio("--look", "clothing")))
