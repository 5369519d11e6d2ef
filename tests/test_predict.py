"""pose3d predict on the synthetic studio: frames rendered with known poses and cameras,
written as images and as a video.

Two kinds of checks. Geometry and units: the model is replaced by an oracle that returns
the ground truth of each crop it is given (heatmap voxels of the crop's camera), so the
crop, Π and triangulation plumbing must give back the known pose in camera / world mm and
its projection in the input's pixels. Files and shapes: a tiny checkpoint through the
command line, whose outputs must open with the right frame counts.
"""

from __future__ import annotations

import json
from collections import deque

import cv2
import numpy as np
import pytest
import torch

from pose3d.cli import main as cli_main
from pose3d.data import render, studio
from pose3d.geometry import Camera, square_box, world_to_heatmap
from pose3d.models import build_model
from pose3d.models.saved import fingerprint
from pose3d.predict import predict_images, predict_views
from pose3d.skeleton import BONES, NUM_JOINTS, ROOT
from tests.studio_helpers import turning_clip

FRAMES = 3
FULL = 160  # full-frame side, pixels
SIZE = 64  # the model's input size
SV_ARCH = {"kind": "single_view", "backbone": "resnet10", "deconv_channels": 16,
           "num_deconv": 3, "depth_bins": 8}
MV_ARCH = {"kind": "multi_view", "backbone": "resnet10", "deconv_channels": 16,
           "num_deconv": 3, "confidence_hidden": 16}


@pytest.fixture(scope="module")
def scene():
    """Three cameras, FRAMES poses [T, J, 3] world mm and the rendered full frames
    views[v][t] (uint8 RGB [FULL, FULL, 3]) with a square box around the person."""
    rng = np.random.default_rng(3)
    rig = studio.random_rig(3, rng, image_size=FULL)
    poses = turning_clip(FRAMES, seed=1)
    appearance, backdrop = render.make_appearance(rng), render.make_backdrop(rng)
    views = [[render.render_view(p, cam, appearance, backdrop) for p in poses] for cam in rig]
    boxes = [[square_box(cam.project(p), 0.2) for p in poses] for cam in rig]
    return {"rig": rig, "poses": poses, "views": views, "boxes": boxes}


def _checkpoint(path, arch: dict) -> str:
    torch.manual_seed(0)
    model = build_model(arch)
    torch.save({"model": model.state_dict(), "fingerprint": fingerprint(model, arch),
                "config": {"data": {"image_size": SIZE}}, "step": 1}, path)
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {"sv": _checkpoint(root / "sv.pt", SV_ARCH), "mv": _checkpoint(root / "mv.pt", MV_ARCH)}


def _write_video(path, frames, fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (FULL, FULL))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _frame_count(path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def _crop_camera(cam: Camera, box) -> Camera:
    """The pinhole camera of a square crop of `box`, computed here from K by hand."""
    x0, y0, x1, y1 = box
    s = SIZE / (x1 - x0)
    A = np.array([[s, 0, -s * x0], [0, s, -s * y0], [0, 0, 1.0]])
    return Camera(A @ cam.K, cam.R, cam.t)


def _sv_oracle(scene, view: int) -> torch.nn.Module:
    """A single-view model whose forward returns each crop's ground-truth heatmap coords."""
    model = build_model(SV_ARCH).eval()
    space = model.heatmap_space(SIZE)
    queue = deque()
    cam = scene["rig"][view]
    for pose, box in zip(scene["poses"], scene["boxes"][view]):
        crop = _crop_camera(cam, box)
        coords, _ = world_to_heatmap(*(torch.as_tensor(a) for a in (pose, crop.K, crop.R,
                                                                     crop.t)), space)
        queue.append(coords.float())
    model.forward = lambda images, return_heatmaps=False: {
        "coords": torch.stack([queue.popleft() for _ in range(len(images))])}
    return model


def test_predict_images_recovers_the_pose_in_camera_mm_and_input_pixels(scene):
    view = 1
    cam = scene["rig"][view]
    gt_cam = cam.world_to_camera(scene["poses"])  # [T, J, 3]
    out = predict_images(_sv_oracle(scene, view), scene["views"][view],
                         boxes=scene["boxes"][view], intrinsics=cam.K,
                         root_depth=gt_cam[:, ROOT, 2], image_size=SIZE, batch_size=2)
    assert out["joints3d_cam"].shape == (FRAMES, NUM_JOINTS, 3)
    np.testing.assert_allclose(out["joints3d_cam"], gt_cam, atol=0.5)
    np.testing.assert_allclose(out["joints3d_rel"], gt_cam - gt_cam[:, ROOT:ROOT + 1],
                               atol=0.5)
    np.testing.assert_allclose(out["joints2d"], cam.project(scene["poses"]), atol=0.02)


def test_predict_images_without_depth_scales_the_skeleton_to_the_reference(scene):
    from pose3d.predict.single_view import REFERENCE_BONES_MM

    view = 0
    cam = scene["rig"][view]
    out = predict_images(_sv_oracle(scene, view), scene["views"][view],
                         boxes=scene["boxes"][view], image_size=SIZE)
    assert "joints3d_cam" not in out  # no intrinsics, no depth: no absolute position
    rel = out["joints3d_rel"]
    bones = np.linalg.norm(rel[:, [b for _, b in BONES]] - rel[:, [a for a, _ in BONES]],
                           axis=-1).sum(-1)
    np.testing.assert_allclose(bones, REFERENCE_BONES_MM, rtol=1e-3)
    np.testing.assert_allclose(rel[:, ROOT], 0.0, atol=1e-9)
    # 2D does not depend on the assumed camera: still the true projection.
    np.testing.assert_allclose(out["joints2d"], cam.project(scene["poses"]), atol=0.02)


def _mv_oracle(scene, rig: list[Camera]) -> torch.nn.Module:
    """A multi-view model whose 2D stage returns each crop's ground-truth 2D joints (in
    heatmap pixels of the undistorted crop) with confidence 1."""
    model = build_model(MV_ARCH).eval()
    queue = deque()
    for t, pose in enumerate(scene["poses"]):
        for v, cam in enumerate(rig):
            crop = _crop_camera(cam.undistorted(), scene["boxes"][v][t])
            queue.append(torch.as_tensor(crop.project(pose) / model.stride, dtype=torch.float32))
    model.predict_2d = lambda images, **options: (
        torch.stack([queue.popleft() for _ in range(len(images))]),
        torch.ones(len(images), NUM_JOINTS))
    return model


def test_predict_views_triangulates_world_joints_that_reproject_onto_the_2d(scene):
    # Lens distortion on the cameras: the 2D must come back in the distorted input pixels.
    rig = [Camera(c.K, c.R, c.t, np.array([-0.05, 0.01, 0.001, -0.001, 0.0]), name=c.name)
           for c in scene["rig"]]
    out = predict_views(_mv_oracle(scene, rig), scene["views"], rig, boxes=scene["boxes"],
                        image_size=SIZE, batch_size=2)
    assert out["joints3d"].shape == (FRAMES, NUM_JOINTS, 3)
    assert out["joints2d"].shape == (FRAMES, len(rig), NUM_JOINTS, 2)
    assert out["valid3d"].all()
    np.testing.assert_allclose(out["joints3d"], scene["poses"], atol=1.0)
    for v, cam in enumerate(rig):
        np.testing.assert_allclose(cam.project(out["joints3d"]), out["joints2d"][:, v],
                                   atol=0.1)


@pytest.mark.slow
def test_cli_writes_predictions_overlays_and_video_for_images_and_a_video(
        scene, checkpoints, tmp_path, capsys):
    frames = scene["views"][0]
    folder = tmp_path / "shots"
    folder.mkdir()
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    _write_video(tmp_path / "clip.mp4", frames)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("frame,x0,y0,x1,y1\n" + "".join(
        f"{name},{','.join(f'{v:.2f}' for v in box)}\n"
        for t, box in enumerate(scene["boxes"][0]) for name in (f"{t:03d}.png", str(t))))
    out = tmp_path / "out"
    rc = cli_main(["predict", "--checkpoint", checkpoints["sv"], str(folder),
                   str(tmp_path / "clip.mp4"), "--out", str(out), "--boxes", str(boxes),
                   "--intrinsics", ",".join(str(v) for v in scene["rig"][0].K[[0, 1, 0, 1],
                                                                                 [0, 1, 2, 2]]),
                   "--root-depth", "5000", "--batch-size", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "decoding" in printed
    for name in ("shots", "clip"):
        npz = np.load(out / name / "predictions.npz")
        assert npz["joints3d_rel"].shape == (FRAMES, NUM_JOINTS, 3)
        assert npz["joints3d_cam"].shape == (FRAMES, NUM_JOINTS, 3)
        assert npz["joints2d"].shape == (FRAMES, NUM_JOINTS, 2)
        np.testing.assert_allclose(npz["joints3d_cam"][:, ROOT, 2], 5000.0, atol=0.01)
        doc = json.loads((out / name / "predictions.json").read_text())
        assert len(doc["frames"]) == FRAMES and doc["root_depth_from"] == "given"
        assert len(doc["frames"][0]["joints2d"]) == NUM_JOINTS
        assert cv2.imread(str(out / name / "pose3d.png")) is not None
        assert json.loads((out / name / "timing.json").read_text())["frames"] == FRAMES
    pngs = sorted((out / "shots" / "overlay").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:03d}.png" for t in range(FRAMES)]
    assert cv2.imread(str(pngs[0])).shape == (FULL, FULL, 3)
    assert _frame_count(out / "clip" / "overlay.mp4") == FRAMES


@pytest.mark.slow
def test_cli_rig_mode_writes_world_joints_and_an_overlay_per_view(scene, checkpoints,
                                                                  tmp_path):
    inputs = []
    for v, frames in enumerate(scene["views"]):
        _write_video(tmp_path / f"view{v}.mp4", frames)
        inputs.append(str(tmp_path / f"view{v}.mp4"))
    cams = [{"name": f"c{v}", "K": c.K.tolist(), "R": c.R.tolist(), "t": c.t.tolist(),
             "dist": [0.0] * 5} for v, c in enumerate(scene["rig"])]
    (tmp_path / "cameras.json").write_text(json.dumps(cams))
    out = tmp_path / "out"
    rc = cli_main(["predict", "--checkpoint", checkpoints["mv"], *inputs, "--cameras",
                   str(tmp_path / "cameras.json"), "--out", str(out), "--no-progress"])
    assert rc == 0
    npz = np.load(out / "predictions.npz")
    assert npz["joints3d_world"].shape == (FRAMES, NUM_JOINTS, 3)
    assert npz["joints2d"].shape == (FRAMES, 3, NUM_JOINTS, 2)
    for v in range(3):
        assert _frame_count(out / f"c{v}" / "overlay.mp4") == FRAMES
    assert cv2.imread(str(out / "pose3d.png")) is not None


@pytest.mark.parametrize("case", ["wrong_kind", "unreadable", "box_outside", "missing",
                                  "rig_wrong_kind", "bad_box"])
def test_bad_inputs_are_one_line_errors(scene, checkpoints, tmp_path, capsys, case):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), scene["views"][0][0])
    args = {"wrong_kind": ["--checkpoint", checkpoints["mv"], str(image)],
            "unreadable": ["--checkpoint", checkpoints["sv"], str(tmp_path / "bad.png")],
            "box_outside": ["--checkpoint", checkpoints["sv"], str(image),
                            "--box", "500,500,600,600"],
            "missing": ["--checkpoint", checkpoints["sv"], str(tmp_path / "nope.mp4")],
            "rig_wrong_kind": ["--checkpoint", checkpoints["sv"], str(image), str(image),
                               "--cameras", str(tmp_path / "cams.json")],
            "bad_box": ["--checkpoint", checkpoints["sv"], str(image), "--box", "5,5,2"]}[case]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "cams.json").write_text(json.dumps(
        [{"K": c.K.tolist(), "R": c.R.tolist(), "t": c.t.tolist()} for c in scene["rig"][:2]]))
    rc = cli_main(["predict", *args, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("pose3d predict: error: ") and "\n" not in err
    expected = {"wrong_kind": "multi_view", "unreadable": "bad.png", "box_outside": "outside",
                "missing": "nope.mp4", "rig_wrong_kind": "single_view",
                "bad_box": "x0,y0,x1,y1"}[case]
    assert expected in err
