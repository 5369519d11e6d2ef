"""The paired experiment (pose3d demo --seeds K, pose3d experiment), shrunk to a few steps."""

import json

import numpy as np
import pytest
from test_demo import TINY

from pose3d import cli, demo, experiment
from pose3d.eval.stats import paired_difference, t_interval

ARMS = experiment.arms


def _arms_with_a_twin(*args, **kwargs):
    """Every arm, plus one identical to L1-only: seed k must give it the same model."""
    return {**ARMS(*args, **kwargs), "L1-again": ["loss.lambda_mv=0"]}


@pytest.mark.slow
def test_demo_with_seeds_runs_the_paired_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo.PRESETS, "small", {**demo.SMALL, **TINY})
    monkeypatch.setattr(demo, "arms", _arms_with_a_twin)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--wandb", "disabled", "--workers", "1",
                     "--seeds", "2"]) == 0
    printed = capsys.readouterr().out
    names = list(_arms_with_a_twin())
    assert "| camera | Base | " + " | ".join(names) + " |" in printed
    assert "P-GT MPJPE" in printed and "time (s): data" in printed
    exp = out / "experiment"
    summary = json.loads((exp / "experiment.json").read_text())
    results = summary["results"]
    same = summary["differences"]["L1-again - L1-only"]["all"]["mpjpe"]
    assert same["values"] == [0.0, 0.0]  # seed k of every arm: same data order, same Base
    l1 = [r["camera"]["all"]["mpjpe"] for r in results["L1-only"]]
    assert l1[0] != l1[1]  # another seed, another data order
    # the intervals are those of the per-seed values
    assert summary["arms"]["L1-only"]["all"]["mpjpe"]["hi"] == pytest.approx(
        t_interval(l1)["hi"])
    base = results["Base"]["camera"]["cam2"]["pa_mpjpe"]
    sn = [r["camera"]["cam2"]["pa_mpjpe"] for r in results["Ours-scale-norm"]]
    l1_cam2 = [r["camera"]["cam2"]["pa_mpjpe"] for r in results["L1-only"]]
    got = summary["differences"]["Ours-scale-norm - L1-only"]["cam2"]["pa_mpjpe"]
    assert got["lo"] == pytest.approx(paired_difference(sn, l1_cam2)["lo"])
    gt_cam2 = [r["camera"]["cam2"]["pa_mpjpe"] for r in results["GT-only"]]
    assert summary["differences"]["GT-only - Base"]["cam2"]["pa_mpjpe"]["values"] == \
        pytest.approx([v - base for v in gt_cam2])
    assert summary["differences"]["L1-only - GT-only"]["cam2"]["pa_mpjpe"]["values"] == \
        pytest.approx([a - b for a, b in zip(l1_cam2, gt_cam2)])
    assert gt_cam2 != l1_cam2  # the control reads no P-GT: another model
    # the first seed kept step checkpoints for the learning curves, the others only the last
    assert len(list((exp / "runs" / "GT-only" / "seed0" / "checkpoints").glob("step_*"))) == 2
    assert len(list((exp / "runs" / "GT-only" / "seed1" / "checkpoints").glob("step_*"))) == 1
    assert (exp / "curves.png").stat().st_size > 1000
    assert 0 < summary["arms"]["Ours+bone"]["scale"]["mean"] < 3
    md = (exp / "experiment.md").read_text()
    assert "Ours+bone - L1-only" in md and "95% CI" in md
    assert (exp / "experiment.png").stat().st_size > 1000
    runs = {p.parent.parent.name for p in (exp / "runs").glob("*/seed*/finished.json")}
    assert runs == set(names) and {"Ours", "Ours+bone", "Ours-scale-norm"} <= runs
    demo_summary = json.loads((out / "demo_summary.json").read_text())
    assert demo_summary["pgt"]["mpjpe_mm"] > 0
    # the Oracle: L1-only on the withheld truth; its gain over GT-only beside the teacher's
    oracle = [r["camera"]["all"]["mpjpe"] for r in results["Oracle"]]
    gt = [r["camera"]["all"]["mpjpe"] for r in results["GT-only"]]
    share = demo_summary["teacher_share"]
    assert share["oracle_gain_mm"] == pytest.approx(np.mean(oracle) - np.mean(gt))
    assert "Oracle - GT-only" in md and "the teacher's P-GT delivers" in printed
    assert "held-out clips of the labeled people" in printed

    # `pose3d experiment` over the same folder reuses every run and evaluation
    evaluate = experiment.evaluate_checkpoints
    monkeypatch.setattr(experiment, "evaluate_checkpoints", None)
    monkeypatch.setattr(experiment, "arms", _arms_with_a_twin)
    assert cli.main(["experiment", "--demo", str(out), "--seeds", "2", "--steps", "2",
                     "--arms", "L1-only", "L1-again"]) == 0
    again = json.loads((exp / "experiment.json").read_text())
    assert again["differences"]["L1-again - L1-only"]["all"]["mpjpe"]["values"] == [0.0, 0.0]
    assert list(again["arms"]) == ["Base", "L1-only", "L1-again"]

    # a length curve: one longer seed with --curves, its checkpoints every quarter
    monkeypatch.setattr(experiment, "evaluate_checkpoints", evaluate)
    length = out / "length"
    assert cli.main(["experiment", "--demo", str(out), "--out", str(length), "--seeds", "1",
                     "--steps", "8", "--arms", "GT-only", "--curves"]) == 0
    curves = json.loads((length / "curves.json").read_text())
    assert list(curves) == ["Base", "GT-only"]
    steps = [p["step"] for p in curves["GT-only"]["points"]]
    assert steps == sorted(steps) and {4, 6, 8} <= set(steps) and steps[-1] == 8
    final = json.loads((length / "experiment.json").read_text())["results"]["GT-only"][0]
    assert curves["GT-only"]["points"][-1]["mpjpe"] == pytest.approx(
        final["camera"]["all"]["mpjpe"])


def test_experiment_names_bad_input(tmp_path, capsys):
    assert cli.main(["experiment", "--demo", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d experiment: error: --demo") and "\n" not in err
    assert cli.main(["experiment", "--demo", str(tmp_path), "--seeds", "1"]) == 2
    assert "no data/manifest.json" in capsys.readouterr().err
    assert cli.main(["experiment", "--demo", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown arm 'Theirs'"):
        experiment.select_arms(cli.build_parser("experiment").parse_args(
            ["experiment", "--demo", str(tmp_path), "--arms", "Theirs"]))
    with pytest.raises(FileNotFoundError, match="no Base checkpoint"):
        experiment.finetune_config(tmp_path, tmp_path / "x", 0, 2, [])
    with pytest.raises(ValueError, match="at least one seed"):
        experiment.run_experiment(tmp_path, tmp_path, tmp_path / "x", {"Ours": []}, [], 2)


def test_each_paired_difference_changes_one_thing():
    names = list(ARMS())
    pairs = experiment.paired_arms(names)
    assert pairs[:2] == [("GT-only", "Base"), ("L1-only", "GT-only")]
    assert ("Ours", "L1-only") in pairs and ("Ours+bone", "L1-only") in pairs
    assert ("L1-agree", "L1-only") in pairs  # which P-GT tuples it reads, nothing else
    assert pairs[2] == ("Oracle", "GT-only")  # what the unlabeled people could teach
    assert ("Oracle", "L1-only") not in pairs
    assert all(b != "GT-only" or a in ("L1-only", "Oracle") for a, b in pairs)
    # without the control, L1-only is compared with Base as before
    assert experiment.paired_arms(["L1-only", "Ours"]) == [("L1-only", "Base"),
                                                           ("Ours", "L1-only")]
    assert experiment.paired_arms(["Ours"]) == []


def test_the_control_arm_reads_the_labeled_shards_alone(tmp_path):
    """GT-only is L1-only without the P-GT group: the finetune stage's shard folders."""
    from pose3d.train.config import load_config
    from pose3d.train.stages import Finetune

    def folders(arm):
        cfg = load_config(None, ["stage=finetune", f"data.root={tmp_path}/d",
                                 f"data.pgt_root={tmp_path}/p", *ARMS()[arm]])
        return Finetune().shard_folders(cfg)

    assert set(folders("L1-only")) == {"data.root", "data.pgt_root"}
    assert set(folders("GT-only")) == {"data.root"}
    assert folders("GT-only")["data.root"] == folders("L1-only")["data.root"]


def test_the_teachers_share_is_its_gain_over_the_oracles():
    def diffs(oracle: float, teacher: float) -> dict:
        return {"Oracle - GT-only": {"all": {"mpjpe": {"mean": oracle}}},
                "L1-only - GT-only": {"all": {"mpjpe": {"mean": teacher}}}}

    share = experiment.teacher_share(diffs(-8.0, -2.0))
    assert share == {"oracle_gain_mm": -8.0, "teacher_gain_mm": -2.0, "share": 0.25}
    assert "25% of it" in experiment.share_line(share)
    # an Oracle that gains nothing leaves no share to speak of
    assert experiment.teacher_share(diffs(0.3, -0.1))["share"] is None
    assert "n/a" in experiment.share_line(experiment.teacher_share(diffs(0.3, -0.1)))
    assert experiment.teacher_share({"L1-only - GT-only": diffs(0, 0)["L1-only - GT-only"]}) \
        is None
