"""`pose3d convert h36m` on Human3.6M's official release: a tiny release written in the
release's formats (tests/h36m_release_data.py) converts into samples whose cameras project
the CDF's joints onto the markers drawn in the videos, with every known defect of the
release met, handled and reported; bad input stops with one line before --out is touched."""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from convert_data import read_dataset, withheld_truth
from h36m_release_data import (
    CORRUPT,
    HEAD,
    SPLITS,
    build_release,
    fixture_cameras,
    mask_rect,
    pose_at,
    write_cdf,
    write_metadata,
    write_video,
)
from h36m_release_pixels import crop_without_remap, marker_errors, marker_radii

from pose3d import cli
from pose3d.data.convert import h36m_official, h36m_release
from pose3d.data.convert.h36m_official import (
    H36MReleaseOptions,
    convert_h36m_release,
    plan_release,
)
from pose3d.geometry import square_about_centre, square_box
from pose3d.train.config import load_config

OUT = 64


def options(root: Path | None = None, **kw) -> H36MReleaseOptions:
    base = dict(image_size=OUT, splits=dict(SPLITS), frame_step=2, eval_frame_step=4,
                metadata=root / "metadata.xml" if root is not None else None)
    return H36MReleaseOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("h36m_release") / "h36m"
    root.mkdir()
    return root, build_release(root)


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    root, poses = release
    out = tmp_path_factory.mktemp("h36m_release_out") / "data"
    summary = convert_h36m_release(root, out, options(root), progress=False)
    return out, summary, read_dataset(out), poses


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(0)[::-1]


def test_samples_reproject_onto_the_video_markers(converted):
    _, _, samples, poses = converted
    checked = 0
    for s in samples.values():
        pose = poses[s.meta["subject"], s.meta["source_file"], s.meta["frame"]]
        for v, cam in enumerate(s.cameras()):
            if cam is None:
                continue
            uv = cam.project(pose)
            img = s.images[v].astype(int)
            pelvis = _centroid(img.min(axis=2) > 140)
            head = _centroid((img[..., 1] > 140) & (img[..., 0] < 100))
            # errors here are below 0.35 px; the next frame's pelvis lies >= 2.6 px away
            assert np.linalg.norm(pelvis - uv[0]) < 1.0, (s.key, v, pelvis, uv[0])
            assert np.linalg.norm(head - uv[HEAD]) < 1.0, (s.key, v, head, uv[HEAD])
            checked += 1
        if s.meta["role"] == "unlabeled":
            assert s.joints3d is None
        else:
            np.testing.assert_allclose(s.joints3d, pose, atol=1e-3)
    assert checked == 4 * len(samples) - 2  # S11 Directions: camera 54138969 is missing


def test_unlabeled_tuples_keep_their_3d_only_as_withheld_truth(converted):
    out, _, samples, poses = converted
    withheld = withheld_truth(out)
    unlabeled = {k for k, s in samples.items() if s.meta["role"] == "unlabeled"}
    assert unlabeled and set(withheld) == unlabeled
    for key in unlabeled:
        s = samples[key]
        assert s.joints3d is None
        np.testing.assert_allclose(
            withheld[key], poses[s.meta["subject"], s.meta["source_file"], s.meta["frame"]],
            atol=1e-3)


@pytest.mark.parametrize("remap", [True, False])
def test_stored_pinhole_cameras_land_on_the_markers(converted, release, tmp_path, monkeypatch,
                                                    remap):
    """Training projects through K, R, t alone: the crops are undistorted so that this
    pinhole projection lands on the image. Without the remap (the distorted frame cropped
    as it is) the markers far from the image centre miss by more."""
    if remap:
        samples = converted[2]
    else:
        monkeypatch.setattr(h36m_official, "crop_view", crop_without_remap)
        root, _ = release
        convert_h36m_release(root, tmp_path / "data", options(root), progress=False)
        samples = read_dataset(tmp_path / "data")
    assert all(not s.dist.any() for s in samples.values())
    errors, radii = marker_errors(samples), marker_radii(samples)
    assert len(errors) == len(radii) == 2 * (4 * len(samples) - 2)
    # measured: below 0.3 px with the remap, up to 0.95 px without it
    assert (errors.max() < 0.4) == remap, errors.max()
    if not remap:  # the misses are the edge markers, the farther half from the optical axis
        assert radii[errors >= 0.4].min() > np.median(radii)


def test_roles_takes_and_frames(converted):
    out, summary, samples, _ = converted
    found = defaultdict(set)
    for s in samples.values():
        found[s.meta["role"]].add((s.meta["subject"], s.meta["action"], s.meta["source_file"],
                                   s.meta["frame"]))
    every2, every4 = (0, 2, 4, 6), (0, 4)
    assert found["labeled"] == {("S1", a, f, i) for a, f in [("Directions-1", "Directions 1"),
                                ("TakingPhoto-1", "TakingPhoto")] for i in every2}
    assert found["unlabeled"] == {("S5", a, f, i) for a, f in [("TakingPhoto-1", "Photo"),
                                  ("WalkingDog-1", "WalkDog 1")] for i in every2}
    # metadata.xml numbers S9's takes: 'Greeting 1' is Greeting-1, 'Greeting' the damaged -2
    assert found["eval"] == {("S9", "Greeting-1", "Greeting 1", i) for i in every4} | {
        ("S11", a, f, i) for a, f in [("Directions-1", "Directions"),
                                      ("Directions-2", "Directions 1")] for i in every4}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "release" and manifest["image_size"] == OUT
    assert summary.written == {"labeled": 8, "unlabeled": 8, "eval": 6}
    assert not (out.parent / "data.h36m-cache").exists()  # the resume cache is gone


def test_every_defect_is_handled_and_reported(converted):
    out, summary, samples, _ = converted
    notes = "\n".join(summary.notes)
    assert notes.splitlines() == json.loads((out / "manifest.json").read_text())["defects"]
    assert "S5 Photo: CDF has 8 frames, videos 54138969 10" in notes  # longer videos
    assert "S9 Greeting 1: CDF has 10 frames, videos 54138969 8" in notes  # longer CDF
    assert "S11 Directions camera 54138969: the release's video is corrupt" in notes
    assert "S9 Greeting (Greeting-2): damaged, left out of eval" in notes
    assert "S5: action names read Photo as TakingPhoto, WalkDog as WalkingDog" in notes
    assert "S5: no MySegmentsMat/ground_truth_bb folder" in notes
    corrupt = [s for s in samples.values() if s.meta["source_file"] == CORRUPT[1]
               and s.meta["subject"] == CORRUPT[0]]
    assert corrupt and all(s.valid.tolist() == [False, True, True, True] for s in corrupt)
    assert summary.missing_views == {"labeled": 0, "unlabeled": 0, "eval": 2}
    assert any(line.startswith("note: S11 Directions") for line in summary.lines())


def test_boxes_come_from_ground_truth_bb_else_from_projected_joints(converted):
    _, _, samples, poses = converted
    for s in samples.values():
        subject, prefix, frame = s.meta["subject"], s.meta["source_file"], s.meta["frame"]
        for v, cam in enumerate(fixture_cameras(subject)):
            if not s.valid[v]:
                continue
            pose = poses[subject, prefix, frame]
            # the crop is undistorted, so its box is in the frame's pinhole pixels
            expected = square_about_centre(_undistorted_bounds(mask_rect(cam, pose), cam)) \
                if subject == "S1" else square_box(cam.project(pose, distort=False), 0.2)
            np.testing.assert_allclose(s.meta["source_boxes"][v], expected, atol=0.02)


def _undistorted_bounds(rect, cam) -> tuple[float, float, float, float]:
    """The bounds of a recorded rectangle's outline in pinhole pixels (cv2.undistortPoints,
    densely sampled)."""
    x0, y0, x1, y1 = rect
    s = np.linspace(0, 1, 200)
    outline = np.concatenate([np.c_[x0 + s * (x1 - x0), np.full_like(s, y)] for y in (y0, y1)]
                             + [np.c_[np.full_like(s, x), y0 + s * (y1 - y0)] for x in (x0, x1)])
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 50, 1e-12)
    uv = cv2.undistortPoints(outline.reshape(-1, 1, 2), cam.K, cam.dist, P=cam.K,
                             criteria=criteria).reshape(-1, 2)
    return (*uv.min(0), *uv.max(0))


def test_without_metadata_takes_follow_file_names(release):
    root, _ = release
    notes = "\n".join(plan_release(root, options()).notes)
    assert "S9 Greeting 1 (Greeting-2): damaged" in notes
    assert "no metadata.xml" in notes


def test_takes_are_numbered_by_the_mapping_else_by_file_name(tmp_path):
    folder = tmp_path / "S1" / "MyPoseFeatures" / "D3_Positions"
    folder.mkdir(parents=True)
    for name in ("Greeting", "Greeting 1", "Greeting 2", "Photo", "_ALL"):
        (folder / f"{name}.cdf").touch()
    names = [(t.name, t.prefix) for t in h36m_release.list_sequences(tmp_path, "S1")]
    assert names == [("Greeting-1", "Greeting"), ("Greeting-2", "Greeting 1"),
                     ("Greeting-3", "Greeting 2"), ("TakingPhoto-1", "Photo")]
    mapped = h36m_release.list_sequences(tmp_path, "S1", {("Greeting", 1): "Greeting 1"})
    assert [(t.name, t.prefix) for t in mapped][:3] == [
        ("Greeting-1", "Greeting 1"), ("Greeting-2", "Greeting"), ("Greeting-3", "Greeting 2")]


def test_metadata_with_other_cameras_is_refused(release, tmp_path):
    root, _ = release
    bad = tmp_path / "metadata.xml"
    write_metadata(bad, shift_centre=("S5", "58860488", 25.0))
    with pytest.raises(ValueError, match=r"metadata.xml: camera 58860488 of S5 does not match"):
        plan_release(root, options(metadata=bad))
    write_metadata(bad, swap_rotation=("S9", "55011271"))  # S11's rotation in S9's slot
    with pytest.raises(ValueError, match=r"camera 55011271 of S9 .*rotation differs"):
        plan_release(root, options(metadata=bad))


def test_video_reader_seeks_to_the_frames_it_would_decode_through(release):
    root, _ = release
    path = h36m_release.video_path(root, "S5", "Photo", "55011271")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (item := capture.read())[0]:
        frames.append(cv2.cvtColor(item[1], cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(frames) == 10
    with h36m_release.VideoFrames(path, seek_gap=1) as video:
        for index in (6, 1, 9, 0, 2, 8):  # backwards, short and long gaps
            np.testing.assert_array_equal(video.read(index), frames[index])
        assert video.read(10) is None


def test_interrupted_run_resumes_without_redoing_finished_sequences(release, converted,
                                                                    tmp_path, monkeypatch):
    root, _ = release
    _, _, clean, _ = converted
    real_samples = h36m_official._samples

    def fail_on_s5(unit):
        if unit.take.subject == "S5":
            raise RuntimeError("interrupted")
        yield from real_samples(unit)

    monkeypatch.setattr(h36m_official, "_samples", fail_on_s5)
    opts = options(root, cache=tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "keep.txt").write_text("the user's")
    with pytest.raises(RuntimeError, match="interrupted"):
        convert_h36m_release(root, tmp_path / "out", opts, progress=False)
    assert len(list((tmp_path / "cache").rglob("*.samples.zip"))) == 2  # S1's two takes

    monkeypatch.setattr(h36m_official, "_samples", real_samples)
    plan = plan_release(root, opts, tmp_path / "out")  # probes each video's first frame
    reads = []
    real_read = h36m_release.VideoFrames.read
    monkeypatch.setattr(h36m_release.VideoFrames, "read",
                        lambda self, i: reads.append(self.path) or real_read(self, i))
    convert_h36m_release(root, tmp_path / "out", opts, plan=plan, progress=False)
    assert not [p for p in reads if p.parent.parent.name == "S1"]  # S1 not decoded again
    assert len(reads) == 4 * 8 + 3 * 2 + 4 * 2 + 4 * 2  # S5, S11 (one view corrupt), S9
    resumed = read_dataset(tmp_path / "out")
    assert resumed.keys() == clean.keys()
    for key, s in clean.items():
        np.testing.assert_array_equal(resumed[key].images, s.images)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["keep.txt"]  # ours are gone


def test_a_partly_readable_corrupt_video_does_not_shorten_the_take(release, tmp_path):
    root = _copy(release[0], tmp_path)
    subject, prefix, camera = CORRUPT
    cam = next(c for c in fixture_cameras(subject) if c.name == camera)
    write_video(h36m_release.video_path(root, subject, prefix, camera), cam,
                [pose_at(subject, prefix, f) for f in range(3)])
    plan = plan_release(root, options(root, splits={"eval": ("S11",)}))
    frames = {u.payload.take.prefix: u.payload.frames for u in plan.units}
    assert frames == {"Directions": [0, 4], "Directions 1": [0, 4]}
    assert any("S11 Directions: CDF has 8 frames, videos 54138969 3" in n for n in plan.notes)


def _convert_cli(root: Path, out: Path, *extra: str) -> int:
    return cli.main(["convert", "h36m", "--source", str(root), "--out", str(out),
                     "--image-size", "32", "--no-progress", *extra])


SUBJECTS = ["--subjects", "labeled=S1", "--subjects", "unlabeled=S5", "--subjects",
            "eval=S9,S11"]


def test_cli_detects_the_release_and_prints_the_summary(release, tmp_path, capsys):
    root, _ = release
    assert _convert_cli(root, tmp_path / "out", *SUBJECTS, "--metadata",
                        str(root / "metadata.xml"), "--roles", "eval",
                        "--eval-frame-step", "4") == 0
    printed = capsys.readouterr().out
    assert "eval: 6 samples, 2 views missing" in printed
    assert "note: S9 Greeting (Greeting-2): damaged" in printed
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert list(manifest["roles"]) == ["eval"] and manifest["roles"]["eval"]["samples"] == 6


def test_s1_protocol_config_differs_from_the_papers_in_data_and_run_only():
    repo = Path(__file__).resolve().parents[1]
    paper, s1 = (load_config(repo / "launch" / "configs" / name)
                 for name in ("h36m.yaml", "h36m_s1.yaml"))
    assert s1.data.root == "data/h36m_s1" and s1.run.root == "runs/h36m_s1"
    assert s1.model.sv == paper.model.sv and s1.model.mv == paper.model.mv
    assert s1.optim == paper.optim and s1.loss == paper.loss
    text = (repo / "launch" / "configs" / "h36m_s1.yaml").read_text()
    assert "--subjects labeled=S1 --subjects unlabeled=S5,S6,S7,S8" in text


# ------------------------------------------------------------------ bad input


def _copy(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "h36m"
    shutil.copytree(root, copy)
    return copy


def _fails_in_one_line(capsys, code: int, out: Path, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()


def test_missing_subject_is_named_before_out_is_touched(release, tmp_path, capsys):
    root, _ = release
    out = tmp_path / "out"
    code = _convert_cli(root, out)  # the paper's splits: S6, S7, S8 are not in the fixture
    _fails_in_one_line(capsys, code, out, "subject S6", str(root / "S6"))


def test_cdf_without_pose_is_named(release, tmp_path, capsys):
    root = _copy(release[0], tmp_path)
    cdf = root / "S9" / "MyPoseFeatures" / "D3_Positions" / "Greeting.cdf"
    cdf.unlink()
    write_cdf(cdf, np.stack([pose_at("S9", "Greeting", f) for f in range(3)]),
              variable="Positions")
    out = tmp_path / "out"
    _fails_in_one_line(capsys, _convert_cli(root, out, *SUBJECTS), out, str(cdf),
                       "no variable 'Pose'")


def test_unreadable_video_is_named(release, tmp_path, capsys):
    root = _copy(release[0], tmp_path)
    video = h36m_release.video_path(root, "S5", "WalkDog 1", "55011271")
    video.write_bytes(b"not a video")
    out = tmp_path / "out"
    _fails_in_one_line(capsys, _convert_cli(root, out, *SUBJECTS), out, str(video))


def test_unreadable_box_file_is_named(release, tmp_path, capsys):
    root = _copy(release[0], tmp_path)
    mat = h36m_release.box_path(root, "S1", "TakingPhoto", "60457274")
    mat.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    out = tmp_path / "out"
    _fails_in_one_line(capsys, _convert_cli(root, out, *SUBJECTS), out, str(mat))


def test_max_frames_caps_each_role(release):
    root, _ = release
    plan = plan_release(root, options(root, max_frames=5))
    sizes = defaultdict(int)
    for unit in plan.units:
        sizes[unit.role] += unit.size
    assert dict(sizes) == {"labeled": 5, "unlabeled": 5, "eval": 5}


def test_unknown_camera_is_named(release, tmp_path, capsys):
    root, _ = release
    plan = plan_release(root, options(root, cameras=["1", "58860488"]))
    assert plan.camera_names == ["55011271", "58860488"]
    out = tmp_path / "out"
    _fails_in_one_line(capsys, _convert_cli(root, out, *SUBJECTS, "--cameras", "12345678"),
                       out, "12345678")


def test_wrong_root_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    _fails_in_one_line(capsys, _convert_cli(tmp_path / "empty", out), out, "holds no Human3.6M")
    _fails_in_one_line(capsys, _convert_cli(tmp_path / "nowhere", out), out, "not found")


# ------------------------------------------------------------------ slower


@pytest.mark.slow
def test_workers_write_the_same_samples(release, converted, tmp_path):
    root, _ = release
    _, _, serial, _ = converted
    convert_h36m_release(root, tmp_path / "out", options(root), workers=2, progress=False)
    parallel = read_dataset(tmp_path / "out")
    assert parallel.keys() == serial.keys()
    for key, s in serial.items():
        np.testing.assert_array_equal(parallel[key].images, s.images)


def test_real_size_frames_convert_without_rescaling(tmp_path):
    root = tmp_path / "h36m"
    poses = build_release(root, real_size=True, takes={"S1": {"Walking": (3, 3)}})
    opts = H36MReleaseOptions(image_size=OUT, splits={"labeled": ("S1",)},
                              metadata=root / "metadata.xml")
    summary = convert_h36m_release(root, tmp_path / "out", opts, progress=False)
    assert not [n for n in summary.notes if "scaled" in n]
    samples = read_dataset(tmp_path / "out")
    assert len(samples) == 3
    for s in samples.values():
        pose = poses["S1", "Walking", s.meta["frame"]]
        for v, cam in enumerate(s.cameras()):
            pelvis = _centroid(s.images[v].astype(int).min(axis=2) > 140)
            assert np.linalg.norm(pelvis - cam.project(pose)[0]) < 1.0


@pytest.mark.slow
def test_converted_fixture_trains_and_evaluates(converted, tmp_path):
    from train_helpers import TINY

    from pose3d.eval import cli as eval_cli
    from pose3d.train import cli as train_cli

    out, _, _, _ = converted
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    run = tmp_path / "run"
    assert train_cli.main(parser.parse_args([
        "--config", TINY, f"data.root={out}", f"data.image_size={OUT}", f"run.root={run}",
        "stage=sv_pretrain", "data.batches_per_epoch=2", "optim.sv_pretrain.epochs=1"])) == 0
    checkpoint = run / "sv_pretrain" / "checkpoints" / "latest.pt"
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    assert eval_cli.main(parser.parse_args([
        "--data", str(out), "--checkpoint", f"sv={checkpoint}", "--out", str(tmp_path / "ev"),
        "--figures", "0", "--device", "cpu"])) == 0
    assert any((tmp_path / "ev").iterdir())
