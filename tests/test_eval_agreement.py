"""View agreement: spread, consensus, scale and camera-axis errors of a model's views."""

import numpy as np
import pytest

from pose3d.eval.agreement import agreement_table, view_agreement
from pose3d.eval.predictions import Predictions
from pose3d.eval.report import summarize, write_report


def _tuples(rng, offsets: np.ndarray, rotation: np.ndarray | None = None,
            n_tuples: int = 5) -> Predictions:
    """n_tuples poses, each seen by len(offsets) views whose prediction is GT + offset [V, 17, 3]
    (root offset 0, so root alignment leaves the offsets as they are)."""
    v = len(offsets)
    gt = rng.normal(0, 300, size=(n_tuples, 17, 3))
    gt[:, 0] = 0.0
    pred = (gt[:, None] + offsets[None]).reshape(-1, 17, 3)
    gts = np.repeat(gt, v, axis=0)
    keys = [f"t{i}/{c}" for i in range(n_tuples) for c in range(v)]
    n = len(keys)
    rot = None if rotation is None else np.broadcast_to(rotation, (n, 3, 3)).copy()
    return Predictions(pred, gts, [f"cam{k[-1]}" for k in keys], ["a"] * n, ["S9"] * n, keys,
                       rotation=rot)


def test_views_that_err_in_opposite_directions_have_an_exact_consensus(rng):
    offsets = np.zeros((2, 17, 3))
    offsets[0, 1:, 2], offsets[1, 1:, 2] = 40.0, -40.0  # every joint but the root, depth
    out = view_agreement(_tuples(rng, offsets, rotation=np.eye(3)))
    assert out["consensus_mpjpe"] == pytest.approx(0.0, abs=1e-9)
    assert out["spread_mm"] == pytest.approx(40.0 * 16 / 17)
    assert out["per_view_mpjpe"] == pytest.approx(40.0 * 16 / 17)
    assert out["err_depth_mm"] == pytest.approx(40.0 * 16 / 17)
    assert out["err_x_mm"] == out["err_y_mm"] == pytest.approx(0.0)


def test_camera_axes_follow_the_rotation_and_scale_sees_shrinking(rng):
    offsets = np.zeros((3, 17, 3))
    offsets[:, 1:, 2] = 30.0  # world z: the camera's x axis under this rotation
    to_camera = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = view_agreement(_tuples(rng, offsets, rotation=to_camera))
    assert out["err_x_mm"] == pytest.approx(30.0 * 16 / 17)
    assert out["err_depth_mm"] == pytest.approx(0.0) and out["spread_mm"] == pytest.approx(0.0)

    p = _tuples(rng, np.zeros((2, 17, 3)))
    shrunk = Predictions(p.pred * 0.8, p.gt, p.camera, p.action, p.subject, p.key)
    out = view_agreement(shrunk)
    assert out["scale"] == pytest.approx(0.8) and "err_x_mm" not in out


def test_report_has_the_agreement_table_and_rotation_survives_saving(rng, tmp_path):
    offsets = rng.normal(0, 20, size=(4, 17, 3))
    offsets[:, 0] = 0.0
    p = _tuples(rng, offsets, rotation=np.eye(3))
    p.save(tmp_path / "p.npz")
    np.testing.assert_array_equal(Predictions.load(tmp_path / "p.npz").rotation, p.rotation)
    summaries = {"L1-only": summarize(p)}
    assert summaries["L1-only"]["views"] == view_agreement(p)
    table = agreement_table(summaries)
    assert table.splitlines()[0] == "| | L1-only |" and "error along camera depth" in table
    assert "Agreement between the views" in write_report(summaries, tmp_path)[
        "markdown"].read_text()


def test_single_view_tuples_have_no_agreement(rng):
    p = _tuples(rng, np.zeros((1, 17, 3)))
    assert "views" not in summarize(p)
    with pytest.raises(ValueError, match="at least two views"):
        view_agreement(p)
