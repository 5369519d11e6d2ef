import json

import numpy as np
import pytest

from pose3d.data.draw import save_figure
from pose3d.eval.figures import sample_figure
from pose3d.eval.predictions import Predictions
from pose3d.eval.report import comparison_table, summarize, write_report


def _predictions(rng, noise_mm: float, n: int = 12) -> Predictions:
    gt = rng.normal(0, 300, size=(n, 17, 3))
    pred = gt + rng.normal(0, noise_mm, size=gt.shape)
    cams = [f"cam{i % 4}" for i in range(n)]
    actions = ["walking" if i < n // 2 else "waving" for i in range(n)]
    return Predictions(pred, gt, cams, actions, ["S9"] * n, [f"k{i}" for i in range(n)])


def test_summary_groups_and_table(rng, tmp_path):
    base, ours = _predictions(rng, 60.0), _predictions(rng, 20.0)
    summaries = {"Base": summarize(base), "Ours": summarize(ours)}
    assert set(summaries["Base"]["camera"]) == {"cam0", "cam1", "cam2", "cam3", "all"}
    assert summaries["Ours"]["camera"]["all"]["mpjpe"] < summaries["Base"]["camera"]["all"][
        "mpjpe"]
    table = comparison_table(summaries)
    lines = table.splitlines()
    assert lines[0] == "| camera | Base | Ours |"
    assert lines[-1].startswith("| mean |") and len(lines) == 2 + 4 + 1
    b = summaries["Base"]["camera"]["cam2"]
    assert f"{b['mpjpe']:.2f} / {b['pa_mpjpe']:.2f}" in table
    paths = write_report(summaries, tmp_path)
    assert json.loads(paths["json"].read_text())["Ours"]["action"]["waving"]["count"] == 6
    assert "per action" in paths["markdown"].read_text()


def test_predictions_round_trip_and_validation(rng, tmp_path):
    p = _predictions(rng, 10.0)
    p.save(tmp_path / "p.npz")
    q = Predictions.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(q.pred, p.pred)
    assert q.camera == p.camera and q.key == p.key
    with pytest.raises(ValueError, match="camera"):
        Predictions(p.pred, p.gt, p.camera[:-1], p.action, p.subject, p.key)


def test_sample_figure_writes_a_png(rng, tmp_path):
    image = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    gt = rng.normal(0, 300, size=(17, 3))
    fig = sample_figure(image, rng.uniform(0, 64, size=(17, 2)), gt + 10, gt, title="t")
    path = save_figure(fig, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
