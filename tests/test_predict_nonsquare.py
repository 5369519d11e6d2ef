"""pose3d predict on non-square frames with non-square boxes (issue 27), against an oracle
written here: the crop the model reads is the square about the box's centre with the box's
longer side, its camera is K shifted to that square's corner and scaled to the model's
input, and without intrinsics the frame's camera is the documented assumption (focal
DEFAULT_FOCAL x the larger side, principal point at the frame's centre (W/2, H/2)).

The model is replaced by a stand-in whose forward returns, for each crop, the heatmap
voxels of the true pose computed by hand from that crop camera; the prediction must then
give back the true pose and its projection."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from pose3d.data import studio
from pose3d.geometry import Camera
from pose3d.models import build_model
from pose3d.predict import predict_images, predict_views
from pose3d.predict.single_view import DEFAULT_FOCAL
from pose3d.skeleton import NUM_JOINTS, ROOT
from tests.studio_helpers import turning_clip

W, H = 200, 120  # a landscape frame: W/2 != H/2
SIZE = 64
SV_ARCH = {"kind": "single_view", "backbone": "resnet10", "deconv_channels": 8,
           "num_deconv": 3, "depth_bins": 8}
MV_ARCH = {"kind": "multi_view", "backbone": "resnet10", "deconv_channels": 8,
           "num_deconv": 3, "confidence_hidden": 8}


def _fitted(base: Camera, poses: np.ndarray) -> Camera:
    """`base` with its image rescaled (fy = 1.07 fx) and shifted so that the person spans
    80 px of height around (125, 58) of the W x H frame."""
    uv = base.project(poses).reshape(-1, 2)
    lo, hi = uv.min(0), uv.max(0)
    s = 80.0 / (hi - lo)[1]
    A = np.array([[s, 0, 125 - s * (lo + hi)[0] / 2],
                  [0, 1.07 * s, 58 - 1.07 * s * (lo + hi)[1] / 2], [0, 0, 1]])
    return Camera(A @ base.K, base.R, base.t, image_size=(W, H), name=base.name)


def _boxes(cam: Camera, poses: np.ndarray) -> list[tuple[float, ...]]:
    """Per frame a box around the person far from square: tall, and wide for frame 1."""
    boxes = []
    for t, p in enumerate(poses):
        lo, hi = cam.project(p).min(0), cam.project(p).max(0)
        pad = 50.0 if t == 1 else 5.0
        boxes.append((lo[0] - pad, lo[1] - 5.0, hi[0] + pad, hi[1] + 5.0))
    sides = np.array([(b[2] - b[0], b[3] - b[1]) for b in boxes])
    assert (np.abs(sides[:, 0] - sides[:, 1]) > 15).all(), sides
    return boxes


@pytest.fixture(scope="module")
def scene():
    """Two cameras with fx != fy and off-centre principal points filming a few poses on
    W x H frames, and per camera and frame a box around the person far from square."""
    poses = turning_clip(3, seed=1)
    rig = [_fitted(c, poses) for c in studio.random_rig(2, np.random.default_rng(5),
                                                        image_size=1000)]
    return {"rig": rig, "cam": rig[0], "poses": poses,
            "boxes": [_boxes(c, poses) for c in rig],
            "frames": [np.full((H, W, 3), 90, np.uint8) for _ in poses]}


def _crop_K(K: np.ndarray, box) -> np.ndarray:
    """K of the SIZE x SIZE crop of the square about `box`'s centre with its longer side."""
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = SIZE / (2 * half)
    return np.array([[s, 0, -s * (cx - half)], [0, s, -s * (cy - half)], [0, 0, 1.0]]) @ K


def _oracle(scene) -> torch.nn.Module:
    """F_sv whose forward returns each crop's true heatmap voxels (u/stride, v/stride and
    the depth bin of the root-relative depth), computed by hand."""
    model = build_model(SV_ARCH).eval()
    space = model.heatmap_space(SIZE)
    cam, queue = scene["cam"], deque()
    for pose, box in zip(scene["poses"], scene["boxes"][0]):
        X = cam.world_to_camera(pose)                              # [J, 3] camera mm
        uvw = X @ _crop_K(cam.K, box).T
        uv = uvw[:, :2] / uvw[:, 2:] / space.stride
        z = (X[:, 2] - X[ROOT, 2] + space.depth_range_mm / 2) / space.depth_range_mm \
            * space.depth_bins
        queue.append(torch.tensor(np.column_stack([uv, z]), dtype=torch.float32))
    model.forward = lambda images, return_heatmaps=False: {
        "coords": torch.stack([queue.popleft() for _ in range(len(images))])}
    return model


def test_non_square_box_on_a_non_square_frame_with_intrinsics(scene):
    cam = scene["cam"]
    truth = cam.world_to_camera(scene["poses"])                      # [T, J, 3]
    out = predict_images(_oracle(scene), scene["frames"], boxes=scene["boxes"][0],
                         intrinsics=cam.K, root_depth=truth[:, ROOT, 2], image_size=SIZE,
                         batch_size=2)
    np.testing.assert_allclose(out["joints2d"], cam.project(scene["poses"]), atol=0.02)
    np.testing.assert_allclose(out["joints3d_cam"], truth, atol=0.5)


def test_non_square_frame_without_intrinsics_assumes_a_centred_principal_point(scene):
    """Without intrinsics the root-relative pose is the true pixels and depths seen through
    the assumed camera: X = z K0^-1 (u, v, 1), K0 = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]]."""
    cam = scene["cam"]
    truth = cam.world_to_camera(scene["poses"])
    out = predict_images(_oracle(scene), scene["frames"], boxes=scene["boxes"][0],
                         root_depth=truth[:, ROOT, 2], image_size=SIZE, batch_size=2)
    f = DEFAULT_FOCAL * max(W, H)
    uv = cam.project(scene["poses"])                                 # [T, J, 2]
    z = truth[..., 2]
    assumed = np.stack([(uv[..., 0] - W / 2) / f * z, (uv[..., 1] - H / 2) / f * z, z], -1)
    np.testing.assert_allclose(out["joints2d"], uv, atol=0.02)
    np.testing.assert_allclose(out["joints3d_rel"], assumed - assumed[:, ROOT:ROOT + 1],
                               atol=0.5)
    assert "joints3d_cam" not in out


def test_rig_with_non_square_boxes_on_non_square_frames(scene):
    """F_mv's 2D stage replaced by each crop's true 2D joints (hand-computed crop camera,
    heatmap pixels): the triangulated joints are the true pose, projecting onto the truth."""
    model = build_model(MV_ARCH).eval()
    queue = deque()
    for t, pose in enumerate(scene["poses"]):
        for cam, boxes in zip(scene["rig"], scene["boxes"]):
            X = cam.world_to_camera(pose)
            uvw = X @ _crop_K(cam.K, boxes[t]).T
            queue.append(torch.tensor(uvw[:, :2] / uvw[:, 2:] / model.stride,
                                      dtype=torch.float32))
    model.predict_2d = lambda images, **options: (
        torch.stack([queue.popleft() for _ in range(len(images))]),
        torch.ones(len(images), NUM_JOINTS))
    views = [scene["frames"] for _ in scene["rig"]]
    out = predict_views(model, views, scene["rig"], boxes=scene["boxes"], image_size=SIZE,
                        batch_size=2)
    np.testing.assert_allclose(out["joints3d"], scene["poses"], atol=1.0)
    for v, cam in enumerate(scene["rig"]):
        np.testing.assert_allclose(out["joints2d"][:, v], cam.project(scene["poses"]),
                                   atol=0.05)
