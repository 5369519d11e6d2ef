import cv2
import numpy as np
import pytest
import torch

from pose3d.geometry import (
    Camera,
    HeatmapSpace,
    h36m_cameras,
    heatmap_to_world,
    pixels_to_camera,
    project,
    projection_matrix,
    square_box,
    validate_cameras,
    world_to_heatmap,
)


def _body_points(rng, n=17):
    """Points of a standing person near the origin, world mm, z up."""
    return rng.uniform([-400, -400, 0], [400, 400, 1800], size=(n, 3))


@pytest.mark.parametrize("subject", ["S1", "S9"])
def test_projection_matches_opencv_on_h36m_rig(subject, rng):
    points = _body_points(rng)
    for cam in h36m_cameras(subject):
        rvec, _ = cv2.Rodrigues(cam.R)
        ref, _ = cv2.projectPoints(points, rvec, cam.t, cam.K, cam.dist)
        np.testing.assert_allclose(cam.project(points), ref[:, 0], atol=1e-6)
        ref_nodist, _ = cv2.projectPoints(points, rvec, cam.t, cam.K, np.zeros(5))
        np.testing.assert_allclose(cam.project(points, distort=False), ref_nodist[:, 0],
                                   atol=1e-6)


def test_h36m_rig_sees_the_subject(rng):
    points = _body_points(rng)
    for cam in h36m_cameras("S11"):
        uv = cam.project(points)
        assert (cam.world_to_camera(points)[:, 2] > 3000).all()
        assert (uv > 0).all() and (uv < 1000).all()


def test_unknown_subject_is_a_clear_error():
    with pytest.raises(ValueError, match="S3"):
        h36m_cameras("S3")


def test_unproject_inverts_project(rng):
    cam = h36m_cameras("S1")[2]
    points = _body_points(rng)
    depth = cam.world_to_camera(points)[:, 2]
    back = cam.unproject(cam.project(points, distort=False), depth)
    np.testing.assert_allclose(back, points, atol=1e-8)


def test_a_camera_with_skew_maps_pixels_back_to_its_rays(rng):
    # K with a skew term (K[0, 1] != 0), written out by hand: u = fx x + s y + cx, v = fy y + cy
    # for normalised (x, y) = (X / Z, Y / Z). Π must undo the skew as well as fx, cx.
    K = np.array([[1100.0, 35.0, 480.0], [0.0, 1050.0, 510.0], [0.0, 0.0, 1.0]])
    cam_points = rng.uniform([-900, -900, 3000], [900, 900, 6000], size=(17, 3))
    x, y = cam_points[:, 0] / cam_points[:, 2], cam_points[:, 1] / cam_points[:, 2]
    uv = np.stack([1100.0 * x + 35.0 * y + 480.0, 1050.0 * y + 510.0], axis=-1)
    back = pixels_to_camera(torch.tensor(uv), torch.tensor(cam_points[:, 2]), torch.tensor(K))
    np.testing.assert_allclose(back.numpy(), cam_points, atol=1e-6)
    # and through the heatmap space: a skewed camera's voxels come back to the world pose
    R = cv2.Rodrigues(np.array([0.3, -1.2, 0.4]))[0]
    t = np.array([100.0, -200.0, 4500.0])
    world = torch.tensor(_body_points(rng))[None]
    space = HeatmapSpace.for_sizes(256, 64)
    Kt, Rt, tt = torch.tensor(K)[None], torch.tensor(R)[None], torch.tensor(t)[None]
    coords, root_depth = world_to_heatmap(world, Kt, Rt, tt, space)
    by_hand = world[0].numpy() @ R.T + t
    u_hand = (1100.0 * by_hand[:, 0] + 35.0 * by_hand[:, 1]) / by_hand[:, 2] + 480.0
    np.testing.assert_allclose(coords[0, :, 0].numpy() * space.stride, u_hand, atol=1e-6)
    back = heatmap_to_world(coords, root_depth, Kt, Rt, tt, space)
    torch.testing.assert_close(back, world, atol=1e-6, rtol=0)


def test_crop_and_resize_moves_pixels_with_the_image(rng):
    cam = h36m_cameras("S1")[0].undistorted()
    points = _body_points(rng)
    uv = cam.project(points)
    box = square_box(uv, margin=0.1)
    cropped = cam.crop_and_resize(box, 64)
    x0, y0, x1, y1 = box
    expected = (uv - [x0, y0]) * (64 / (x1 - x0))
    np.testing.assert_allclose(cropped.project(points), expected, atol=1e-8)
    assert cropped.image_size == (64, 64)
    assert (cropped.project(points) > 0).all() and (cropped.project(points) < 64).all()


def test_square_box_is_square_with_margin():
    x0, y0, x1, y1 = square_box(np.array([[10.0, 20.0], [30.0, 100.0]]), margin=0.25)
    assert x1 - x0 == pytest.approx(y1 - y0)
    assert y1 - y0 == pytest.approx(80 * 1.5)
    assert (x0 + x1) / 2 == pytest.approx(20) and (y0 + y1) / 2 == pytest.approx(60)


def test_projection_matrix_agrees_with_project(rng):
    cam = h36m_cameras("S5")[1]
    points = _body_points(rng)
    P = projection_matrix(*(torch.from_numpy(a) for a in (cam.K, cam.R, cam.t)))
    homog = torch.cat([torch.from_numpy(points), torch.ones(len(points), 1,
                                                            dtype=torch.float64)], 1)
    uvw = homog @ P.T
    np.testing.assert_allclose((uvw[:, :2] / uvw[:, 2:]).numpy(),
                               cam.project(points, distort=False), atol=1e-8)
    np.testing.assert_allclose(P.numpy(), cam.P)


def _batched_rig(batch=3):
    cams = h36m_cameras("S1")
    K = torch.tensor(np.stack([c.K for c in cams]))[None].repeat(batch, 1, 1, 1)
    R = torch.tensor(np.stack([c.R for c in cams]))[None].repeat(batch, 1, 1, 1)
    t = torch.tensor(np.stack([c.t for c in cams]))[None].repeat(batch, 1, 1)
    return K, R, t


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-2)])
def test_heatmap_round_trip_is_exact(dtype, tol, rng):
    K, R, t = (x.to(dtype) for x in _batched_rig())
    world = torch.tensor(np.stack([_body_points(rng) for _ in range(3)]), dtype=dtype)
    world_v = world[:, None].expand(-1, 4, -1, -1)  # [B, V, J, 3]
    space = HeatmapSpace.for_sizes(256, 64)
    coords, root_depth = world_to_heatmap(world_v, K, R, t, space)
    assert coords.shape == (3, 4, 17, 3) and root_depth.shape == (3, 4)
    back = heatmap_to_world(coords, root_depth, K, R, t, space)
    torch.testing.assert_close(back, world_v, atol=tol, rtol=0)


def test_heatmap_depth_is_centred_on_the_root(rng):
    K, R, t = _batched_rig(1)
    world = torch.tensor(_body_points(rng))[None, None].expand(1, 4, -1, -1).clone()
    space = HeatmapSpace(stride=4, depth_bins=64, depth_range_mm=2000)
    coords, _ = world_to_heatmap(world, K, R, t, space)
    torch.testing.assert_close(coords[..., 0, 2], torch.full((1, 4), 32.0, dtype=torch.float64))
    # moving joint 5 by 100 mm along camera 0's optical axis moves it 100 * D / S bins in z
    axis = R[0, 0, 2]  # camera z axis in world coordinates
    world[..., 5, :] += 100 * axis
    moved, _ = world_to_heatmap(world, K, R, t, space)
    assert moved[0, 0, 5, 2] - coords[0, 0, 5, 2] == pytest.approx(100 * 64 / 2000)


def test_heatmap_maps_are_differentiable(rng):
    K, R, t = _batched_rig(1)
    world = torch.tensor(_body_points(rng))[None, None].expand(1, 4, -1, -1).clone()
    world.requires_grad_(True)
    space = HeatmapSpace.for_sizes(256, 64)
    coords, root_depth = world_to_heatmap(world, K, R, t, space)
    heatmap_to_world(coords, root_depth.detach(), K, R, t, space).sum().backward()
    assert torch.isfinite(world.grad).all() and world.grad.abs().sum() > 0


def test_bad_shapes_raise_clear_errors():
    K, R, t = _batched_rig(1)
    with pytest.raises(ValueError, match=r"points must have shape \[\.\.\., N, 3\]"):
        project(torch.zeros(1, 4, 17, 2, dtype=torch.float64), K, R, t)
    with pytest.raises(ValueError, match="R must have shape"):
        project(torch.zeros(1, 4, 17, 3, dtype=torch.float64), K, R[..., :2], t)
    with pytest.raises(ValueError, match="root_depth"):
        heatmap_to_world(torch.zeros(1, 4, 17, 3), torch.zeros(1), K.float(), R.float(),
                         t.float(), HeatmapSpace())
    with pytest.raises(ValueError, match="positive"):
        HeatmapSpace(stride=0)


def test_bad_cameras_raise_clear_errors():
    K, R, t = np.eye(3) * 1000, np.eye(3), np.zeros(3)
    K[2, 2] = 1
    with pytest.raises(ValueError, match="not a rotation"):
        Camera(K, R * 2, t)
    with pytest.raises(ValueError, match="reflection"):
        Camera(K, np.diag([1.0, 1.0, -1.0]), t)
    with pytest.raises(ValueError, match="NaN"):
        Camera(K, R, np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"shape \[3, 3\]"):
        Camera(K[:2], R, t)
    with pytest.raises(ValueError, match="singular"):
        validate_cameras(torch.zeros(3, 3), torch.eye(3), torch.zeros(3))


def test_camera_dict_round_trip():
    cam = h36m_cameras("S7")[3]
    back = Camera.from_dict(cam.to_dict())
    for a in ("K", "R", "t", "dist"):
        np.testing.assert_array_equal(getattr(back, a), getattr(cam, a))
    assert back.name == cam.name and back.image_size == cam.image_size
