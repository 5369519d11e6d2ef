"""MPI-INF-3DHP converter on a tiny training set in the dataset's exact on-disk layout:
S*/Seq*/annot.mat (v5 .mat, annot2 / annot3 / univ_annot3 as 14 x 1 cell arrays of
[frames, 28*2] / [frames, 28*3]), camera.calibration (Skeletool text, 4x4 row-major
intrinsic and world->camera extrinsic in mm), frames as imageSequence/video_N.avi or as
extracted imageFrames/video_N/frame_%06d.jpg. Frames are 200 px (the real ones 2048)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from convert_data import read_dataset, standing_pose, withheld_truth

from pose3d import cli
from pose3d.data.convert import MpiInf3dhpOptions, convert_mpi_inf_3dhp
from pose3d.data.convert.mpi_inf_3dhp import read_calibration
from pose3d.geometry import Camera
from pose3d.skeleton.mappings import MPI_INF_3DHP_TO_H36M
from pose3d.train.config import load_config

FRAME = 200
OUT = 48
NUM_CAMERAS = 14  # the training set's rig
SUBJECTS = tuple(f"S{i}" for i in range(1, 9))
NUM_FRAMES = {**{s: 3 for s in SUBJECTS}, "S8": 4}
IMAGE_SUBJECTS = ("S3", "S8")  # extracted JPEG frames; the others have videos
SHORT_VIDEO = ("S4", 7)  # this camera's video lacks the last frame
OPTIONS = dict(image_size=OUT, sequences=("Seq1",), frame_step=2)
# this subject's calibration carries radial distortion (k1 k2): its frames and annot2 are
# drawn through the lens, and the converter must store undistorted crops
DISTORTED = ("S2", (-0.25, 0.15))


def look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera -> world rotation of a camera at `center` looking at `target`, y down."""
    z = (target - center) / np.linalg.norm(target - center)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def rig(subject: str) -> list[Camera]:
    K = np.array([[260.0, 0, 101.5], [0, 259.0, 98.0], [0, 0, 1]])
    cams = []
    for c in range(NUM_CAMERAS):
        angle = 2 * np.pi * c / NUM_CAMERAS + 0.05 * int(subject[1:])
        center = np.array([4200 * np.cos(angle), 4200 * np.sin(angle), 800.0 + 60 * (c % 3)])
        k1, k2 = DISTORTED[1] if subject == DISTORTED[0] else (0.0, 0.0)
        cams.append(Camera.from_center(K, look_at(center, np.array([0, 0, 900.0])), center,
                                       image_size=(FRAME, FRAME), name=str(c),
                                       dist=[k1, k2, 0.0, 0.0, 0.0]))
    return cams


def full_skeleton(ours: np.ndarray) -> np.ndarray:
    """Our 17 joints -> 3DHP's 28 (the extra joints near their neighbours)."""
    full = np.zeros((28, 3))
    full[list(MPI_INF_3DHP_TO_H36M)] = ours
    for extra, near, offset in [(0, 7, 80), (1, 8, -40), (2, 7, -60), (8, 11, -60),
                                (12, 13, -70), (13, 14, -60), (17, 16, -70), (21, 6, -50),
                                (22, 6, -80), (26, 3, -50), (27, 3, -80)]:
        full[extra] = ours[near] + [0, 0, offset]
    return full


def write_calibration(path: Path, cams: list[Camera]) -> None:
    lines = ["Skeletool Camera Calibration File V1.0"]
    for cam in cams:
        intrinsic = np.eye(4)
        intrinsic[:3, :3] = cam.K
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = cam.R, cam.t
        lines += [f"name          {cam.name}", "  sensor      10 10",
                  f"  size        {FRAME} {FRAME}", "  animated    0",
                  "  intrinsic   " + " ".join(f"{v:.10g}" for v in intrinsic.ravel()),
                  "  extrinsic   " + " ".join(f"{v:.10g}" for v in extrinsic.ravel()),
                  "  radial      " + (" ".join(f"{v:.10g}" for v in cam.dist[:2])
                                       if cam.dist.any() else "0")]
    path.write_text("\n".join(lines) + "\n")


def frame_image(pelvis_uv: np.ndarray) -> np.ndarray:
    image = np.full((FRAME, FRAME, 3), 40, np.uint8)
    cv2.circle(image, tuple(int(round(v * 16)) for v in pelvis_uv), 4 * 16, (255, 255, 255),
               -1, cv2.LINE_AA, shift=4)
    return image


def build_3dhp(root: Path) -> dict:
    """Write the tiny training set; returns {(subject, frame): our-order world pose}."""
    poses = {}
    for subject in SUBJECTS:
        seq = root / subject / "Seq1"
        (seq / "imageSequence").mkdir(parents=True)
        cams = rig(subject)
        write_calibration(seq / "camera.calibration", cams)
        n = NUM_FRAMES[subject]
        world = [standing_pose(80.0 * f) for f in range(n)]
        poses.update({(subject, f): world[f] for f in range(n)})
        annot2, annot3 = np.empty((NUM_CAMERAS, 1), object), np.empty((NUM_CAMERAS, 1), object)
        for c, cam in enumerate(cams):
            full = [full_skeleton(p) for p in world]
            annot2[c, 0] = np.stack([cam.project(p) for p in full]).reshape(n, 56)
            annot3[c, 0] = np.stack([cam.world_to_camera(p) for p in full]).reshape(n, 84)
            frames = [frame_image(cam.project(p[:1])[0]) for p in world]
            if (subject, c) == SHORT_VIDEO:
                frames = frames[:-1]
            if subject in IMAGE_SUBJECTS:
                folder = seq / "imageFrames" / f"video_{c}"
                folder.mkdir(parents=True)
                for f, image in enumerate(frames):
                    cv2.imwrite(str(folder / f"frame_{f + 1:06d}.jpg"), image)
            elif c in (0, 2, 7, 8):
                video = cv2.VideoWriter(str(seq / "imageSequence" / f"video_{c}.avi"),
                                        cv2.VideoWriter_fourcc(*"MJPG"), 25, (FRAME, FRAME))
                for image in frames:
                    video.write(image)
                video.release()
        scipy.io.savemat(seq / "annot.mat", {
            "annot2": annot2, "annot3": annot3, "univ_annot3": annot3,
            "frames": np.arange(n, dtype=float)[:, None],
            "cameras": np.arange(NUM_CAMERAS, dtype=float)[None]})
    return poses


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("3dhp")
    return root, build_3dhp(root)


@pytest.fixture(scope="module")
def converted(dataset, tmp_path_factory) -> tuple[Path, dict, dict]:
    root, poses = dataset
    out = tmp_path_factory.mktemp("3dhp_out")
    summary = convert_mpi_inf_3dhp(root, out, MpiInf3dhpOptions(**OPTIONS), progress=False)
    assert summary.missing_views == {"labeled": 0, "unlabeled": 1, "eval": 0}
    return out, read_dataset(out), poses


def test_calibration_parses_to_the_written_cameras(dataset):
    root, _ = dataset
    cams = read_calibration(root / "S2" / "Seq1" / "camera.calibration")
    assert sorted(cams) == list(range(NUM_CAMERAS))
    truth = rig("S2")[7]
    np.testing.assert_allclose(cams[7].P, truth.P, rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose(cams[7].dist, [*DISTORTED[1], 0, 0, 0])
    assert not read_calibration(root / "S1" / "Seq1" / "camera.calibration")[7].dist.any()
    assert cams[7].image_size == (FRAME, FRAME)


def test_roles_subjects_and_frames_follow_the_paper(converted):
    out, samples, _ = converted
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r: v["subjects"] for r, v in manifest["roles"].items()} == {
        "labeled": ["S1", "S2", "S3"], "unlabeled": ["S4", "S5", "S6", "S7"], "eval": ["S8"]}
    frames = defaultdict(set)
    for s in samples.values():
        frames[s.meta["role"]].add((s.meta["subject"], s.meta["frame"]))
        assert s.meta["camera_names"] == ["0", "2", "7", "8"] or not all(s.valid)
    # --frame-step 2 thins labeled / unlabeled; eval keeps every frame
    assert frames["labeled"] == {(s, f) for s in ("S1", "S2", "S3") for f in (0, 2)}
    assert frames["unlabeled"] == {(s, f) for s in ("S4", "S5", "S6", "S7") for f in (0, 2)}
    assert frames["eval"] == {("S8", f) for f in range(4)}


def test_joints_reproject_onto_the_stored_2d_annotations(converted):
    out, samples, poses = converted
    withheld = withheld_truth(out)
    assert set(withheld) == {k for k, s in samples.items() if s.meta["role"] == "unlabeled"}
    for s in samples.values():
        truth = poses[s.meta["subject"], s.meta["frame"]]
        if s.meta["role"] == "unlabeled":
            assert s.joints3d is None  # kept only as the withheld truth, to score the P-GT
            np.testing.assert_allclose(withheld[s.key], truth, atol=1e-2)
        else:
            np.testing.assert_allclose(s.joints3d, truth, atol=1e-2)
        assert not s.dist.any()  # S2's distorted frames were cropped undistorted
        for v, cam in enumerate(s.cameras()):
            if cam is None:
                continue
            uv = cam.project(truth if s.joints3d is None else s.joints3d)
            np.testing.assert_allclose(uv, s.meta["joints2d"][v], atol=0.02)
            assert (uv > 0).all() and (uv < OUT).all()
            bright = np.argwhere(s.images[v, :, :, 0] > 150).mean(0)[::-1]
            assert np.linalg.norm(bright - uv[0]) < 0.5, (s.key, v, bright, uv[0])


def test_a_frame_past_the_end_of_one_video_is_an_invalid_view(converted):
    _, samples, _ = converted
    (s,) = [s for s in samples.values() if (s.meta["subject"], s.meta["frame"]) == ("S4", 2)]
    assert s.valid.tolist() == [True, True, False, True]
    assert s.meta["joints2d"][2] is None


def test_cli_picks_cameras_roles_and_frame_source(dataset, tmp_path):
    root, _ = dataset
    args = ["convert", "mpi-inf-3dhp", "--source", str(root), "--out", str(tmp_path),
            "--image-size", "32", "--roles", "labeled", "--subjects", "labeled=S3",
            "--sequences", "Seq1", "--cameras", "0,8", "--frames", "images", "--no-progress"]
    assert cli.main(args) == 0
    samples = read_dataset(tmp_path)
    assert len(samples) == 3
    assert all(s.meta["camera_names"] == ["0", "8"] for s in samples.values())
    assert cli.main(args[:-3] + ["--frames", "images", "--subjects", "labeled=S1",
                                 "--overwrite", "--no-progress"]) == 2  # S1 has videos only



def test_config_has_the_papers_stage_settings():
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "launch" / "configs" / "mpi_inf_3dhp.yaml", ["stage=finetune"])
    assert [cfg.optim[s].epochs for s in ("mv_pretrain", "sv_pretrain", "finetune")] == \
        [10, 7, 10]
    assert [cfg.optim[s].batch_size for s in ("mv_pretrain", "sv_pretrain", "finetune")] == \
        [8, 8, 6]  # sv: 8 four-view tuples = the paper's 32 images
    assert cfg.data.image_size == 256 and cfg.data.root == "data/mpi_inf_3dhp"
    assert cfg.model.sv.backbone == cfg.model.mv.backbone == "resnet50"
    assert cfg.model.sv.depth_bins == 64  # 256 px input -> 64^3 heatmaps


# ------------------------------------------------------------------ bad input


def _convert(root: Path, out: Path, **overrides):
    options = MpiInf3dhpOptions(**{**OPTIONS, **overrides})
    return convert_mpi_inf_3dhp(root, out, options, progress=False)


def test_absent_subject_sequence_or_camera_is_named(dataset, tmp_path):
    root, _ = dataset
    with pytest.raises(FileNotFoundError, match="subject S9"):
        _convert(root, tmp_path / "a", splits={"eval": ("S9",)})
    with pytest.raises(FileNotFoundError, match="Seq2"):
        _convert(root, tmp_path / "b", sequences=("Seq1", "Seq2"))
    with pytest.raises(ValueError, match=r"camera\(s\) \[14\]"):
        _convert(root, tmp_path / "c", cameras=(0, 14))
    with pytest.raises(FileNotFoundError, match="S8/Seq1/imageSequence/video_0.avi"):
        _convert(root, tmp_path / "d", cameras=(0, 2), frames="video",
                 splits={"eval": ("S8",)})


def _sequence_copy(dataset, tmp_path) -> tuple[Path, Path]:
    """A one-subject copy of the dataset (S8 only) to damage."""
    import shutil

    root, _ = dataset
    shutil.copytree(root / "S8", tmp_path / "root" / "S8")
    return tmp_path / "root", tmp_path / "root" / "S8" / "Seq1"


def test_missing_files_are_named(dataset, tmp_path):
    root, seq = _sequence_copy(dataset, tmp_path)
    only_s8 = {"eval": ("S8",)}
    (seq / "annot.mat").rename(seq / "annot.bak")
    with pytest.raises(FileNotFoundError, match="annot.mat"):
        _convert(root, tmp_path / "a", splits=only_s8)
    (seq / "annot.bak").rename(seq / "annot.mat")
    (seq / "camera.calibration").unlink()
    with pytest.raises(FileNotFoundError, match="camera.calibration"):
        _convert(root, tmp_path / "b", splits=only_s8)


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.pop("annot3"), "'annot3'"),
    (lambda m: m.update(annot2=m["annot2"][:4]), "camera 7 is not there"),
    (lambda m: m["annot2"].__setitem__((0, 0), m["annot2"][0, 0][:, :50]), r"\[frames, 56\]"),
    (lambda m: m.update(annot3=m["annot3"][::-1]), "disagree by"),  # cameras out of order
])
def test_wrong_annotation_layout_is_named(dataset, tmp_path, damage, message):
    root, seq = _sequence_copy(dataset, tmp_path)
    annot = scipy.io.loadmat(seq / "annot.mat")
    annot = {k: v for k, v in annot.items() if not k.startswith("__")}
    damage(annot)
    scipy.io.savemat(seq / "annot.mat", annot)
    with pytest.raises(ValueError, match=message):
        _convert(root, tmp_path / "out", splits={"eval": ("S8",)})


def test_wrong_calibration_layout_is_named(dataset, tmp_path):
    root, seq = _sequence_copy(dataset, tmp_path)
    calib = seq / "camera.calibration"
    text = calib.read_text()
    calib.write_text(text.replace("Skeletool Camera Calibration File V1.0", "hello"))
    with pytest.raises(ValueError, match="not a calibration file"):
        _convert(root, tmp_path / "a", splits={"eval": ("S8",)})
    lines = text.splitlines()
    lines[5] = "  intrinsic   1 2 3"
    calib.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="camera.calibration:6: 'intrinsic' needs 16"):
        _convert(root, tmp_path / "b", splits={"eval": ("S8",)})
    calib.write_text(text.replace("radial      0", "radial      0.1 0.2 0.3 0.4", 1))
    with pytest.raises(ValueError, match="camera.calibration:8: 'radial' needs 3"):
        _convert(root, tmp_path / "c", splits={"eval": ("S8",)})
