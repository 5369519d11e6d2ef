"""What the paired experiment promises about its runs (issue 33 items 1-2, issue 32 item 2):
each arm trains with its own settings; an evaluation or a learning-curve point is reused only
for the very checkpoint it was made of; a killed fine-tuning resumes; a replaced Base is
noticed by its content, whatever its mtime. On the demo's first three stages, shrunk."""

from __future__ import annotations

import argparse
import json
import os
import shutil

import pytest
import yaml
from omegaconf import OmegaConf
from test_demo import TINY

from pose3d import cli, curves, demo, experiment
from pose3d.curves import learning_curves, run_curve
from pose3d.train import checkpoint
from pose3d.train.reuse import NOT_COMPARED

EXTRA = ["run.device=cpu", "run.wandb=disabled"]  # what `pose3d experiment --device cpu` adds


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{**dict(full=False, first_seed=0, wandb="disabled",
                                        steps_scale=1.0, seeds=1, lambda_mv=None,
                                        lambda_bone=None, protocol="s1"), **kw})


@pytest.fixture(scope="module")
def base_demo(tmp_path_factory):
    """A demo folder with the data, the teacher, the P-GT and Base (2 steps each): the
    folder `pose3d experiment --demo` reads."""
    out = tmp_path_factory.mktemp("experiment") / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(demo.PRESETS, "small", TINY)
        args = _args()
        demo.synthesize(out / "data", demo.studio_config(args), workers=1, progress=False)
        for label, overrides in demo.stage_plan(args, out / "runs", out / "data"):
            if label in ("mv_pretrain", "pgt", "sv_pretrain"):
                demo.run_stage(overrides, 1)
    return out


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    return {k: v for key, value in tree.items()
            for k, v in (_flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                         else {f"{prefix}{key}": value}).items()}


def _stated(overrides: list[str]) -> dict[str, object]:
    """{key: value} of `key=value` overrides, values parsed as the config parses them."""
    return _flat(OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides))))


def _trained_with(run_dir) -> dict[str, object]:
    """The flat config saved in a run's last checkpoint: what it trained with."""
    latest = checkpoint.find_latest(run_dir / "checkpoints")
    return _flat(yaml.safe_load(checkpoint.load(latest)["config"]))


def _same(a, b) -> bool:
    if isinstance(b, str) and b.startswith("${run.root}/"):  # an arm's folder, resolved
        return isinstance(a, str) and a.endswith(b[len("${run.root}"):])
    return float(a) == float(b) if isinstance(a, (int, float)) and not isinstance(a, bool) \
        else a == b


@pytest.mark.slow
def test_each_arm_trains_with_its_own_settings_and_no_other_difference(base_demo):
    """Every arm of experiment.arms() (whatever it holds): the config its run saved carries
    the arm's settings, and differs from every other arm's only in the keys the two arms
    set, and in at least one of them (two names, two models)."""
    import fnmatch

    every = experiment.arms()
    out = base_demo / "arms"
    experiment.run_finetunings(base_demo / "runs", out, every, [0], 2, EXTRA)
    saved = {arm: _trained_with(out / "runs" / arm / "seed0") for arm in every}
    for arm, overrides in every.items():
        for key, value in _stated(overrides).items():
            assert _same(saved[arm][key], value), (arm, key, saved[arm][key], value)
    for a in every:
        for b in every:
            if a == b:
                continue
            stated = set(_stated(every[a])) | set(_stated(every[b]))
            # a path the rerun check leaves out still tells two arms apart when an arm sets
            # it (the Oracle reads its own label folder)
            differ = {k for k in saved[a] if not _same(saved[a][k], saved[b][k])
                      and (k in stated
                           or not any(fnmatch.fnmatchcase(k, p) for p in NOT_COMPARED))}
            assert differ, f"{a} and {b} train the same model"
            assert differ <= stated, (a, b, differ)


def test_the_cpu_preset_gives_each_stage_its_own_steps(tmp_path):
    """The tiny preset gives every stage 2 steps, which would hide a stage taking another's;
    the CPU preset's stage plan gives each stage the preset's steps, and the demo's
    fine-tunings their arm's settings."""
    from pose3d.train.config import load_config

    steps = demo.SMALL["batches"]
    assert len(set(steps.values())) == len(steps)  # distinct: a mix-up shows
    args = _args()
    plan = {label: load_config(None, o) for label, o in
            demo.stage_plan(args, tmp_path / "runs", tmp_path / "data")}
    finetunes = [label for label, cfg in plan.items() if cfg.stage == "finetune"]
    assert finetunes == [a for a in demo.demo_arms(args) if a in demo.FINETUNE_DIRS]
    for label, cfg in plan.items():
        if cfg.stage != "pgt":
            assert cfg.data.batches_per_epoch == steps[cfg.stage], label
            assert cfg.optim[cfg.stage].epochs == 1, label
    for arm in finetunes:
        for key, value in _stated(demo.demo_arms(args)[arm]).items():
            assert _same(OmegaConf.select(plan[arm], key), value), (arm, key)
    assert demo.paired_steps(args) == steps["finetune"]


def _one_arm(name: str = experiment.BASELINE, *more: str) -> dict[str, list[str]]:
    return {name: [*experiment.arms()[name], *more]}


def _eval_mpjpe(summary: dict, arm: str) -> float:
    return summary["results"][arm][0]["camera"]["all"]["mpjpe"]


@pytest.mark.slow
def test_a_retrained_run_is_evaluated_again_and_its_curve_recomputed(base_demo, monkeypatch):
    """The run folder moved away (as a refusal says) and trained again with another lr:
    its evaluation and learning-curve points are those of the new checkpoints."""
    root, data, out = base_demo / "runs", base_demo / "data", base_demo / "retrain"
    arm = experiment.BASELINE
    run_dir = out / "runs" / arm / "seed0"
    first = experiment.run_experiment(root, data, out, _one_arm(), [0], 2, EXTRA)
    curve = learning_curves({arm: run_dir}, data, out)[arm]
    assert curve[-1]["mpjpe"] == pytest.approx(_eval_mpjpe(first, arm), rel=1e-6)
    # the caller's evaluation of latest.pt (`final`) stands for that checkpoint
    evaluated, real_predict = [], curves.predict
    monkeypatch.setattr(curves, "predict",
                        lambda *a, **k: evaluated.append(1) or real_predict(*a, **k))
    given = learning_curves({arm: run_dir}, data, out / "given", final={arm: -1.0})[arm]
    assert len(evaluated) == len(curve) - 1
    assert given[:-1] == curve[:-1] and given[-1] == {"step": curve[-1]["step"], "mpjpe": -1.0}
    monkeypatch.undo()

    shutil.move(run_dir, out / "moved-away")
    again = experiment.run_experiment(root, data, out, _one_arm(arm, "optim.finetune.lr=0.05"),
                                      [0], 2, EXTRA)
    fresh = run_curve(run_dir, data)  # the new checkpoints, evaluated here
    assert _eval_mpjpe(again, arm) != _eval_mpjpe(first, arm)
    assert _eval_mpjpe(again, arm) == pytest.approx(fresh[-1]["mpjpe"], rel=1e-6)
    assert learning_curves({arm: run_dir}, data, out)[arm] == fresh


class Killed(Exception):
    """The process died here."""


@pytest.mark.slow
def test_a_killed_fine_tuning_is_resumed_not_evaluated_half_done(base_demo, monkeypatch):
    root, data, out = base_demo / "runs", base_demo / "data", base_demo / "killed"
    arm = experiment.BASELINE
    run_dir = out / "runs" / arm / "seed0"
    real_save = checkpoint.save

    def save_then_die(state, folder, step, keep=3):
        real_save(state, folder, step, keep)
        raise Killed(f"after step {step}")

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(Killed, match="after step 1"):
        experiment.run_experiment(root, data, out, _one_arm(), [0], 2, EXTRA)
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert not (run_dir / "finished.json").exists()
    step1 = checkpoint.digest(run_dir / "checkpoints" / "step_00000001.pt")

    summary = experiment.run_experiment(root, data, out, _one_arm(), [0], 2, EXTRA)
    assert (run_dir / "finished.json").is_file()
    ckpts = checkpoint.step_checkpoints(run_dir / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000001.pt", "step_00000002.pt"]
    assert checkpoint.digest(ckpts[0]) == step1  # resumed from it, not trained again
    assert checkpoint.load(ckpts[-1])["step"] == 2
    points = run_curve(run_dir, data)
    assert points[0]["mpjpe"] != points[1]["mpjpe"]
    assert _eval_mpjpe(summary, arm) == pytest.approx(points[1]["mpjpe"], rel=1e-6)


def _point_latest_at(ckpt_dir, target) -> None:
    """latest.pt -> target (a link, as the trainer makes it): a replaced Base."""
    tmp = ckpt_dir / ".latest-test"
    os.symlink(target, tmp)
    os.replace(tmp, ckpt_dir / "latest.pt")


@pytest.mark.slow
def test_a_base_replaced_by_an_older_file_is_noticed_by_its_content(base_demo, capsys,
                                                                    monkeypatch):
    """Issue 32 item 2: Base's latest.pt replaced by another checkpoint whose mtime is older
    than every evaluation and run: Base is evaluated again, the fine-tunings of the old
    Base are refused in one line; a checkpoint of another stage is not taken for Base."""
    exp = base_demo / "replaced"
    command = ["experiment", "--demo", str(base_demo), "--out", str(exp), "--seeds", "1",
               "--arms", experiment.BASELINE, "--steps", "2", "--device", "cpu"]
    ckpt_dir = base_demo / "runs" / "sv_pretrain" / "checkpoints"
    latest = os.readlink(ckpt_dir / "latest.pt")
    assert cli.main(command) == 0
    base_before = json.loads((exp / "experiment.json").read_text())["results"]["Base"]
    older = ckpt_dir / "step_00000001.pt"
    # a mid-run checkpoint is also an unfinished demo (tests/test_out_folders.py): here
    # only the content check is under test
    monkeypatch.setattr(experiment, "check_finished_demo", lambda demo: None)
    assert older.stat().st_mtime_ns < (exp / "eval" / "Base" / "report.json").stat().st_mtime_ns
    capsys.readouterr()
    try:
        _point_latest_at(ckpt_dir, older.name)
        assert cli.main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pose3d experiment: error: ") and "\n" not in err, err
        assert "not reused" in err and "is not the Base it started from" in err, err
        base_after = json.loads((exp / "eval" / "Base" / "report.json").read_text())["Base"]
        assert base_after["camera"]["all"]["mpjpe"] == pytest.approx(
            run_curve(base_demo / "runs" / "sv_pretrain", base_demo / "data")[0]["mpjpe"],
            rel=1e-6)
        assert base_after["camera"]["all"]["mpjpe"] != base_before["camera"]["all"]["mpjpe"]

        tuned = exp / "runs" / experiment.BASELINE / "seed0" / "checkpoints" / "step_00000002.pt"
        _point_latest_at(ckpt_dir, tuned)
        assert cli.main(command) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "is not a Base checkpoint" in err and "stage=finetune" in err
    finally:
        _point_latest_at(ckpt_dir, latest)
