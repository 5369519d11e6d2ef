"""Human3.6M converter on a tiny dataset in learnable-triangulation's exact on-disk layout:
the pickled labels dict (structured `cameras` and `table`, TLBR int16 boxes, keypoints in
their joint order) and processed/<subject>/<action>/imageSequence[-undistorted]/<camera>/
img_%06d.jpg frames (1-based names), with the real H36M calibration scaled to 200 px."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from convert_data import read_dataset, standing_pose, withheld_truth

from pose3d import cli
from pose3d.data.convert import H36MOptions, convert_h36m, h36m
from pose3d.data.convert.crop import crop_image
from pose3d.data.convert.h36m import select_rows
from pose3d.data.loader import make_eval_loader
from pose3d.data.shards import shards_for_role
from pose3d.geometry import Camera, h36m_cameras
from pose3d.skeleton.mappings import H36M_TO_LEARNABLE_TRIANGULATION
from pose3d.train.config import load_config

FRAME = 200  # source frame side (the real ones are 1000)
OUT = 64
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
ACTIONS = ("Walking-1", "Greeting-2")
# (subject, action) -> frame indices present (every 5th, as h36m-fetch extracts them);
# S9 Greeting-2 is a damaged sequence.
FRAMES = {**{(s, "Walking-1"): (0, 5, 10) for s in SUBJECTS[:5]},
          ("S9", "Walking-1"): (0, 5, 10, 15), ("S11", "Walking-1"): (0, 5, 10),
          ("S9", "Greeting-2"): (0, 5)}
EVAL_STEP = 2  # the paper's 64 needs more frames than a test should write
MISSING_VIEW = ("S7", 5, 2)  # subject, frame, camera index: zero box, no image
NO_VIEWS = ("S8", 10)  # every box zero
UNDISTORTED = "S9"  # this subject's images live in imageSequence-undistorted


def small_cameras(subject: str) -> list[Camera]:
    """The real H36M rig of `subject`, intrinsics scaled to FRAME px."""
    s = FRAME / 1000
    return [Camera(np.diag([s, s, 1.0]) @ c.K, c.R, c.t, c.dist, (FRAME, FRAME), c.name)
            for c in h36m_cameras(subject)]


def marker_image(point: np.ndarray) -> np.ndarray:
    """A dark BGR frame with a bright disc at `point` (the pelvis)."""
    image = np.full((FRAME, FRAME, 3), 30, np.uint8)
    cv2.circle(image, (int(round(point[0] * 16)), int(round(point[1] * 16))), 4 * 16,
               (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return image


def tlbr_around(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    c, half = (lo + hi) / 2, (hi - lo).max() * 0.65
    left, top, right, bottom = c[0] - half, c[1] - half, c[0] + half, c[1] + half
    return np.array([top, left, bottom, right]).round().astype(np.int16)


def build_h36m(root: Path) -> dict:
    """Write the tiny dataset; returns {(subject, action, frame): our-order pose}."""
    cams_dtype = [("R", np.float32, (3, 3)), ("t", np.float32, (3, 1)),
                  ("K", np.float32, (3, 3)), ("dist", np.float32, 5)]
    cameras = np.empty((len(SUBJECTS), 4), dtype=cams_dtype)
    rigs = {s: small_cameras(s) for s in SUBJECTS}
    for i, s in enumerate(SUBJECTS):
        for c, cam in enumerate(rigs[s]):
            cameras[i, c] = (cam.R, cam.t.reshape(3, 1), cam.K, cam.dist)
    table_dtype = np.dtype([("subject_idx", np.int8), ("action_idx", np.int8),
                            ("frame_idx", np.int16), ("keypoints", np.float32, (17, 3)),
                            ("bbox_by_camera_tlbr", np.int16, (4, 4))])
    rows, poses = [], {}
    for (subject, action), frames in FRAMES.items():
        for f in frames:
            pose = standing_pose(80.0 * (f // 5 % 4))
            poses[subject, action, f] = pose
            boxes = np.zeros((4, 4), np.int16)
            for c, cam in enumerate(rigs[subject]):
                if (subject, f, c) == MISSING_VIEW or (subject, f) == NO_VIEWS:
                    continue
                boxes[c] = tlbr_around(cam.project(pose))
                undistorted = subject == UNDISTORTED
                folder = "imageSequence-undistorted" if undistorted else "imageSequence"
                path = root / "processed" / subject / action / folder / cam.name
                path.mkdir(parents=True, exist_ok=True)
                pelvis = cam.project(pose[:1], distort=not undistorted)[0]
                cv2.imwrite(str(path / f"img_{f + 1:06d}.jpg"), marker_image(pelvis))
            rows.append((SUBJECTS.index(subject), ACTIONS.index(action), f,
                         pose[list(H36M_TO_LEARNABLE_TRIANGULATION)], boxes))
    labels = {"subject_names": list(SUBJECTS), "camera_names": [c.name for c in rigs["S1"]],
              "action_names": list(ACTIONS), "cameras": cameras,
              "table": np.array(rows, dtype=table_dtype)}
    (root / "extra").mkdir(parents=True)
    np.save(root / "extra" / "human36m-multiview-labels-GTbboxes.npy", labels)
    return poses


@pytest.fixture(scope="module")
def h36m_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("h36m")
    return root, build_h36m(root)


@pytest.fixture(scope="module")
def converted(h36m_root, tmp_path_factory) -> tuple[Path, dict, dict]:
    root, poses = h36m_root
    out = tmp_path_factory.mktemp("h36m_out")
    options = H36MOptions(image_size=OUT, eval_frame_step=EVAL_STEP)
    summary = convert_h36m(root, out, options, progress=False)
    assert summary.skipped == {"labeled": 0, "unlabeled": 1, "eval": 0}
    assert summary.missing_views == {"labeled": 0, "unlabeled": 1, "eval": 0}
    return out, read_dataset(out), poses


def test_roles_subjects_and_frames_follow_the_paper(converted):
    out, samples, _ = converted
    manifest = json.loads((out / "manifest.json").read_text())
    roles = manifest["roles"]
    assert {r: roles[r]["subjects"] for r in roles} == {
        "labeled": ["S1", "S5", "S6"], "unlabeled": ["S7", "S8"], "eval": ["S11", "S9"]}
    by_role = defaultdict(set)
    for s in samples.values():
        by_role[s.meta["role"]].add((s.meta["subject"], s.meta["action"], s.meta["frame"]))
    # eval: every 2nd frame held, the damaged S9 Greeting-2 left out; S8 frame 10 has no view
    assert by_role["eval"] == {("S9", "Walking-1", 0), ("S9", "Walking-1", 10),
                               ("S11", "Walking-1", 0), ("S11", "Walking-1", 10)}
    assert len(by_role["labeled"]) == 9
    assert ("S8", "Walking-1", 10) not in by_role["unlabeled"]
    assert len(by_role["unlabeled"]) == 5
    assert manifest["dataset"] == "h36m" and manifest["image_size"] == OUT


def test_3d_is_withheld_for_unlabeled_and_kept_in_our_joint_order(converted):
    out, samples, poses = converted
    withheld = withheld_truth(out)
    assert set(withheld) == {k for k, s in samples.items() if s.meta["role"] == "unlabeled"}
    for key, s in samples.items():
        truth = poses[s.meta["subject"], s.meta["action"], s.meta["frame"]]
        if s.meta["role"] == "unlabeled":
            assert s.joints3d is None  # kept only as the withheld truth, to score the P-GT
            np.testing.assert_allclose(withheld[key], truth, atol=1e-3)
        else:
            np.testing.assert_allclose(s.joints3d, truth, atol=1e-3)


def test_joints_reproject_inside_the_boxes_and_onto_the_image(converted):
    _, samples, poses = converted
    for s in samples.values():
        pose = poses[s.meta["subject"], s.meta["action"], s.meta["frame"]]
        for v, cam in enumerate(s.cameras()):
            if cam is None:
                continue
            uv = cam.project(pose)
            assert (uv > 0).all() and (uv < OUT).all(), (s.key, v, uv)
            # the pelvis marker drawn in the source frame (through the lens, except under
            # imageSequence-undistorted) sits where the pinhole camera projects it
            bright = np.argwhere(s.images[v, :, :, 0] > 140)
            centre = bright.mean(0)[::-1]
            assert np.linalg.norm(centre - uv[0]) < 0.5, (s.key, v, centre, uv[0])
        # distorted images are cropped undistorted: no stored camera keeps a distortion
        assert not s.dist.any()


def test_a_missing_view_is_stored_invalid(converted):
    _, samples, _ = converted
    subject, frame, cam = MISSING_VIEW
    (s,) = [s for s in samples.values()
            if (s.meta["subject"], s.meta["frame"]) == (subject, frame)]
    assert s.valid.tolist() == [c != cam for c in range(4)]
    assert s.meta["source_boxes"][cam] is None
    assert (s.images[cam] == 0).all()


def test_the_loader_batches_converted_tuples(converted):
    out, _, _ = converted
    batches = list(make_eval_loader(shards_for_role(out, "unlabeled"), batch_size=4))
    assert sum(len(b["key"]) for b in batches) == 5
    batch = batches[0]
    assert batch["images"].shape[1:] == (4, 3, OUT, OUT)
    assert not batch["has_joints3d"].any()
    subject, frame, cam = MISSING_VIEW
    valid = {k: v for b in batches for k, v in zip(b["key"], b["valid"].tolist())}
    assert valid[f"{subject}-Walking_1-0000-{frame:06d}"] == [c != cam for c in range(4)]


def test_eval_keeps_every_64th_frame_the_table_holds():
    frames = np.arange(0, 5 * 200, 5)  # h36m-fetch: every 5th recorded frame
    table = np.zeros(2 * len(frames), dtype=[("subject_idx", np.int8), ("action_idx", np.int8),
                                             ("frame_idx", np.int16)])
    table["action_idx"][len(frames):] = 1
    table["frame_idx"] = np.r_[frames, frames[::-1]]  # any row order
    labels = {"subject_names": ["S9"], "action_names": ["Walking-1", "Greeting-2"],
              "table": table}
    rows = select_rows(labels, "eval", ["S9"], H36MOptions())
    assert sorted(table["frame_idx"][rows]) == [0, 320, 640, 960]  # Greeting-2 is damaged
    rows = select_rows(labels, "labeled", ["S9"], H36MOptions(frame_step=100))
    assert sorted(table["frame_idx"][rows]) == [0, 0, 500, 500]


def test_crop_image_follows_the_camera_pixel_map():
    ys, xs = np.mgrid[:300, :300]
    blob = np.exp(-((xs - 200.0) ** 2 + (ys - 120.0) ** 2) / (2 * 6.0**2))  # at u=200, v=120
    image = np.repeat(blob[:, :, None], 3, axis=2).astype(np.float32)
    for box, size in [((150.0, 80.0, 250.0, 180.0), 50), ((100.3, 50.7, 290.3, 240.7), 32),
                      ((-40.0, -40.0, 260.0, 260.0), 20)]:
        crop = crop_image(image, box, size)[:, :, 0]
        scale = size / (box[2] - box[0])
        expected = np.array([(200 - box[0]) * scale, (120 - box[1]) * scale])
        ys, xs = np.mgrid[:size, :size]
        centre = np.array([(crop * xs).sum(), (crop * ys).sum()]) / crop.sum()
        np.testing.assert_allclose(centre, expected, atol=0.1)


def test_cli_converts_one_role_and_refuses_to_overwrite(h36m_root, tmp_path, capsys):
    root, _ = h36m_root
    args = ["convert", "h36m", "--source", str(root), "--out", str(tmp_path), "--image-size",
            "32", "--roles", "eval", "--subjects", "eval=S11", "--no-progress"]
    assert cli.main(args) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert list(manifest["roles"]) == ["eval"] and manifest["roles"]["eval"]["samples"] == 1
    assert cli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite", "--eval-frame-step", "1"]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text())["roles"]["eval"]["samples"] == 3


@pytest.mark.slow
def test_workers_write_the_same_samples(h36m_root, converted, tmp_path):
    root, _ = h36m_root
    _, serial, _ = converted
    options = H36MOptions(image_size=OUT, eval_frame_step=EVAL_STEP)
    convert_h36m(root, tmp_path, options, workers=2, progress=False)
    parallel = read_dataset(tmp_path)
    assert parallel.keys() == serial.keys()
    for key, s in serial.items():
        np.testing.assert_array_equal(parallel[key].images, s.images)
        np.testing.assert_array_equal(parallel[key].K, s.K)



def test_config_has_the_papers_stage_settings():
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "launch" / "configs" / "h36m.yaml", ["stage=finetune"])
    assert [cfg.optim[s].epochs for s in ("mv_pretrain", "sv_pretrain", "finetune")] == \
        [6, 20, 9]
    assert [cfg.optim[s].batch_size for s in ("mv_pretrain", "sv_pretrain", "finetune")] == \
        [8, 8, 6]  # sv: 8 four-view tuples = the paper's 32 images
    assert cfg.data.image_size == 256 and cfg.data.root == "data/h36m"
    assert cfg.model.sv.backbone == cfg.model.mv.backbone == "resnet50"
    assert cfg.model.sv.depth_bins == 64  # 256 px input -> 64^3 heatmaps


# ------------------------------------------------------------------ bad input


def _labels_path(root: Path) -> Path:
    return root / "extra" / "human36m-multiview-labels-GTbboxes.npy"


def test_missing_labels_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="human36m-multiview-labels-GTbboxes.npy"):
        convert_h36m(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="root folder not found"):
        convert_h36m(tmp_path / "nowhere", tmp_path / "out", progress=False)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.pop("table"), r"lacks \['table'\]"),
    (lambda d: d.update(table=d["table"][["subject_idx", "action_idx", "frame_idx",
                                          "keypoints"]]), "bbox_by_camera_tlbr"),
    (lambda d: d.update(cameras=d["cameras"][:2]), "cameras must be"),
    (lambda d: d["table"]["bbox_by_camera_tlbr"].__setitem__(  # LTRB instead of TLBR
        Ellipsis, d["table"]["bbox_by_camera_tlbr"][..., [1, 0, 3, 2]] + [0, 90, 0, 90]),
     r"\(top, left, bottom, right\)"),
    (lambda d: d.update(subject_names=["../S1", *d["subject_names"][1:]]),
     "subject_names: subject must be a plain name"),
    (lambda d: d.update(action_names=["Walking-1", "/tmp"]),
     "action_names: action must be a plain name"),
])
def test_wrong_labels_layout_is_named(h36m_root, tmp_path, damage, message):
    root, _ = h36m_root
    labels = np.load(_labels_path(root), allow_pickle=True).item()
    damage(labels)
    bad = tmp_path / "bad.npy"
    np.save(bad, labels)
    with pytest.raises(ValueError, match=message):
        convert_h36m(root, tmp_path / "out", labels=bad, progress=False)


def test_absent_subject_camera_or_image_is_named(h36m_root, tmp_path):
    root, _ = h36m_root
    splits = {"labeled": ("S2",)}
    with pytest.raises(ValueError, match="S2"):
        convert_h36m(root, tmp_path / "a", H36MOptions(splits=splits), progress=False)
    with pytest.raises(ValueError, match="camera '12345678'"):
        convert_h36m(root, tmp_path / "b", H36MOptions(cameras=["12345678"]), progress=False)
    image = root / "processed" / "S5" / "Walking-1" / "imageSequence" / "55011271"
    target = image / "img_000006.jpg"
    hidden = target.with_suffix(".bak")
    target.rename(hidden)
    try:
        with pytest.raises(FileNotFoundError, match="img_000006.jpg"):
            convert_h36m(root, tmp_path / "c", H36MOptions(splits={"labeled": ("S5",)}),
                         progress=False)
    finally:
        hidden.rename(target)


def test_absent_subject_folder_is_named(h36m_root, tmp_path):
    root, _ = h36m_root
    folder = root / "processed" / "S6"
    folder.rename(root / "processed" / "S6_gone")
    try:
        with pytest.raises(FileNotFoundError, match="subject S6"):
            convert_h36m(root, tmp_path / "out", progress=False)
    finally:
        (root / "processed" / "S6_gone").rename(folder)


def test_bad_labels_bytes_are_reported(tmp_path):
    (tmp_path / "extra").mkdir()
    _labels_path(tmp_path).write_bytes(io.BytesIO(b"not numpy").getvalue())
    with pytest.raises(ValueError, match="not a readable labels"):
        convert_h36m(tmp_path, tmp_path / "out", progress=False)


@pytest.mark.parametrize("field, where", [
    ("keypoints", (Ellipsis, 4, 1)),  # one coordinate of one joint
    ("cameras", "t"),  # S5's second camera: the subject of the damaged frame
])
def test_non_finite_labels_are_named_before_any_work(h36m_root, tmp_path, monkeypatch,
                                                     capsys, field, where):
    root, _ = h36m_root
    labels = np.load(_labels_path(root), allow_pickle=True).item()
    table = labels["table"]
    row = np.flatnonzero((table["subject_idx"] == SUBJECTS.index("S5"))
                         & (table["frame_idx"] == 5))[0]
    if field == "keypoints":
        table["keypoints"][row][where] = np.nan
    else:
        labels["cameras"][where][SUBJECTS.index("S5"), 1] = np.inf
    bad = tmp_path / "nan.npy"
    np.save(bad, labels)
    reads = []
    monkeypatch.setattr(h36m, "_read_view", lambda *a: reads.append(a))
    code = cli.main(["convert", "h36m", "--source", str(root), "--labels", str(bad), "--out",
                     str(tmp_path / "out"), "--roles", "labeled", "--image-size", "32",
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(bad) in err, err
    if field == "keypoints":
        assert "NaN or infinite in 1 frame(s)" in err and "S5 Walking-1 frame 5" in err, err
    else:
        assert "camera 55011271 of S5" in err and "t" in err, err
    assert reads == []  # refused while planning, before any image was read
    assert not (tmp_path / "out").exists()
