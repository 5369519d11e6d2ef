"""`pose3d eval` through the real command line: a tiny studio, a single-view checkpoint from
one step of `pose3d train stage=sv_pretrain`, and report.json checked against the shards and
against metrics recomputed here from the saved predictions."""

import json

import numpy as np
import pytest
from train_data import write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.data.loader import iterate_samples
from pose3d.data.shards import shards_for_role

SIZE = 32


@pytest.mark.slow
def test_eval_command_writes_a_report_that_matches_its_predictions(tmp_path, capsys):
    data = tmp_path / "data"
    write_tiny_dataset(data, frames=3, image_size=SIZE)
    assert cli.main(["train", "--config", TINY, f"data.root={data}", f"data.image_size={SIZE}",
                     f"run.root={tmp_path}", "stage=sv_pretrain", "data.batches_per_epoch=1",
                     "optim.sv_pretrain.epochs=1", "optim.sv_pretrain.batch_size=1"]) == 0
    ckpt = tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt"
    out = tmp_path / "eval"
    capsys.readouterr()
    assert cli.main(["eval", "--data", str(data), "--checkpoint", f"Base={ckpt}",
                     "--out", str(out), "--figures", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "| mean |" in printed and "Base" in printed

    report = json.loads((out / "report.json").read_text())
    assert list(report) == ["Base"]
    base = report["Base"]
    # one prediction per valid view of every eval tuple (S9), each with its own GT
    samples = list(iterate_samples(shards_for_role(data, "eval")))
    views = sum(int(s.valid.sum()) for s in samples)
    assert base["camera"]["all"]["count"] == views > 0
    assert sum(row["count"] for cam, row in base["camera"].items() if cam != "all") == views
    assert set(base["subject"]) == {"S9", "all"}
    preds = np.load(out / "predictions_Base.npz")
    truth = {s.key: s.joints3d for s in samples}
    for key, gt in zip(preds["key"], preds["gt"]):
        np.testing.assert_allclose(gt, truth[str(key).split("/")[0]], atol=1e-3)
    # MPJPE and 3DPCK recomputed here: root (pelvis, joint 0) aligned, mean over joints
    pred, gt = preds["pred"], preds["gt"]
    err = np.linalg.norm((pred - pred[:, :1]) - (gt - gt[:, :1]), axis=-1)
    overall = base["camera"]["all"]
    assert overall["mpjpe"] == pytest.approx(err.mean(axis=1).mean(), rel=1e-5)
    assert overall["pck3d"] == pytest.approx((err <= 150).mean(), rel=1e-5)
    # N-MPJPE: the root-aligned prediction scaled by <p, g> / <p, p> onto the GT
    p, g = pred - pred[:, :1], gt - gt[:, :1]
    scale = (p * g).sum(axis=(1, 2)) / (p * p).sum(axis=(1, 2))
    n_err = np.linalg.norm(scale[:, None, None] * p - g, axis=-1).mean(axis=1)
    assert overall["n_mpjpe"] == pytest.approx(n_err.mean(), rel=1e-5)
    # one step of training leaves the model far off; Procrustes alignment takes much of it away
    assert overall["mpjpe"] > 20 and 0 < overall["pa_mpjpe"] < overall["mpjpe"]
    assert (out / "report.md").read_text().count("Base") >= 4
    assert len(list((out / "figures").glob("Base_*.png"))) == 1
