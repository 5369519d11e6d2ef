"""The paired experiment (pose3d experiment / pose3d demo --seeds K), shrunk to seconds."""

import json

import pytest
from test_demo import TINY

from pose3d import cli, demo, experiment
from pose3d.eval.stats import paired_difference, t_interval


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """A shrunk demo's data, Base and P-GT (the single-seed fine-tunings skipped)."""
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(demo.PRESETS, "small", {**demo.SMALL, **TINY})
        mp.setattr(demo, "FINETUNE_DIRS", {})
        mp.setattr(demo, "evaluate_checkpoints", lambda *a, **k: None)
        mp.setattr(demo, "print_summary", lambda *a, **k: None)
        assert cli.main(["demo", "--out", str(out), "--wandb", "disabled", "--workers", "1"]) == 0
    return out


@pytest.mark.slow
def test_experiment_pairs_the_seeds_and_reports_intervals(demo_folder, monkeypatch):
    # an arm identical to L1-only: with the same seed it must give the same model
    every = {**experiment.arms(), "L1-again": ["loss.lambda_mv=0"]}
    monkeypatch.setattr(experiment, "arms", lambda *a, **k: every)
    out = demo_folder / "exp"
    argv = ["experiment", "--demo", str(demo_folder), "--out", str(out), "--seeds", "2",
            "--steps", "2", "--arms", "L1-only", "Ours-scale-norm", "Ours+bone", "L1-again"]
    assert cli.main(argv) == 0
    summary = json.loads((out / "experiment.json").read_text())
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
    assert summary["differences"]["L1-only - Base"]["cam2"]["pa_mpjpe"]["values"] == \
        pytest.approx([v - base for v in l1_cam2])
    assert 0 < summary["arms"]["Ours+bone"]["scale"]["mean"] < 3
    md = (out / "experiment.md").read_text()
    assert "| camera | Base | L1-only | Ours-scale-norm | Ours+bone | L1-again |" in md
    assert "Ours+bone - L1-only" in md and "95% CI" in md
    assert (out / "experiment.png").stat().st_size > 1000
    runs = {p.parent.parent.name for p in (out / "runs").glob("*/seed*/finished.json")}
    assert runs == {"L1-only", "Ours-scale-norm", "Ours+bone", "L1-again"}
    # a second call reuses every run and evaluation
    monkeypatch.setattr(experiment, "evaluate_checkpoints", None)
    assert cli.main(argv) == 0


def test_experiment_names_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown arm 'Theirs'"):
        cli.main(["experiment", "--demo", str(tmp_path), "--arms", "Theirs"])
    with pytest.raises(FileNotFoundError, match="no Base checkpoint"):
        cli.main(["experiment", "--demo", str(tmp_path), "--seeds", "1"])
    with pytest.raises(ValueError, match="at least one seed"):
        experiment.run_experiment(tmp_path, tmp_path, tmp_path / "x", {"Ours": []}, [], 2)
