import dataclasses

import numpy as np
import pytest
from studio_helpers import standing_pose, write_dataset

from pose3d.data import render, studio
from pose3d.data.loader import iterate_samples
from pose3d.geometry import Camera, h36m_cameras
from pose3d.skeleton import BONES, JOINT_NAMES
from pose3d.skeleton.h36m import bone_side

J = {name: i for i, name in enumerate(JOINT_NAMES)}
GREEN = np.array([0, 255, 0])  # no limb colour is pure green


def _plain_backdrop() -> render.Backdrop:
    flat = np.zeros((4, 8, 3), np.uint8) + GREEN.astype(np.uint8)
    return render.Backdrop(np.stack([GREEN, GREEN]).astype(float), 500.0,
                           np.ones((4, 4), np.float32), flat, 8000.0, 4000.0,
                           GREEN.astype(float), 1e9)


def _front_camera(size=96) -> Camera:
    """A camera 4 m in front of the standing pose (which faces -y), aimed at the chest."""
    K = np.array([[1.2 * size, 0, size / 2], [0, 1.2 * size, size / 2], [0, 0, 1.0]])
    cam_to_world = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float).T  # x right, y down
    # Looking along +y from y = -4000 (the subject's front); image x = world x.
    return Camera.from_center(K, cam_to_world.T, [0, -4000, 900], image_size=(size, size))


def _body_only(pose, cam, appearance):
    return render.draw_body(np.zeros((*cam.image_size[::-1], 3), np.uint8), pose, cam,
                            appearance)


def test_appearance_colours_sides_warm_left_cool_right(rng):
    look = render.make_appearance(rng, look="sides")
    for b, bone in enumerate(BONES):
        r, _, blue = look.bone_colours[b]
        side = bone_side(bone)
        if side == "left":
            assert r > blue + 60, (bone, look.bone_colours[b])
        elif side == "right":
            assert blue > r + 60, (bone, look.bone_colours[b])
    limbs = [tuple(c) for b, c in zip(BONES, look.bone_colours) if bone_side(b) != "centre"]
    assert len(set(limbs)) == len(limbs)  # every limb its own colour


def test_rendered_limbs_show_their_side_and_near_parts_hide_far_ones(rng):
    cam = _front_camera()
    look = render.make_appearance(rng, look="sides")
    pose = standing_pose()
    # The left forearm crosses in front of the belly (towards the camera, at -y).
    pose[J["left_wrist"]] = [-60, -250, 1150]
    image = _body_only(pose, cam, look).astype(int)
    uv, _ = render.pinhole_project(cam, pose)

    def pixel(a, b, f=0.5):
        x, y = np.round(uv[J[a]] + f * (uv[J[b]] - uv[J[a]])).astype(int)
        return image[y, x]

    left_shin, right_shin = pixel("left_knee", "left_ankle"), pixel("right_knee", "right_ankle")
    assert left_shin[0] > left_shin[2] + 40 and right_shin[2] > right_shin[0] + 40
    # Where the forearm crosses the torso axis (x = 0, at its height), the nearer forearm
    # is what we see; just below the forearm, the neutral torso.
    (crossing, below), _ = render.pinhole_project(cam, np.array([[0, 0, 1150], [0, 0, 1030]]))
    seen = image[int(round(crossing[1])), int(round(crossing[0]))]
    torso = image[int(round(below[1])), int(round(below[0]))]
    assert seen[0] > seen[2] + 40, seen  # warm arm
    assert abs(torso[0] - torso[2]) < 40 and torso.sum() > 0, torso  # neutral torso
    # Nothing is drawn far from the body.
    assert not image[:, :5].any() and not image[:, -5:].any()


def test_joints_projected_through_stored_cameras_land_on_the_rendered_body(tmp_path, rng):
    """Render on a plain green room, store, read back: every joint projected with the
    stored cameras falls on a body pixel, and the same points shifted off the body do not."""
    config = studio.StudioConfig(roles={"eval": ("S9",)}, image_size=64, jitter=0.05)
    look = render.make_appearance(rng)
    rig = [c.undistorted() for c in studio.subject_rig("S9", "h36m", 0)]
    from pose3d.data.shards import ShardSetWriter

    with ShardSetWriter(tmp_path, 10) as writer:
        for k in range(3):
            pose = standing_pose(yaw=1.1 * k, shift=(200.0 * k, -100.0))
            images, cams = studio.render_tuple(pose, rig, look, _plain_backdrop(), 64, rng,
                                               margin=config.margin, jitter=config.jitter)
            meta = {"subject": "S9", "action": "stand", "frame": k, "role": "eval"}
            writer.write(studio.encode_tuple(meta, images, cams, pose))
    samples = list(iterate_samples(str(tmp_path)))
    assert len(samples) == 3
    on_body, off_body = [], []
    for sample in samples:
        for v, cam in enumerate(sample.cameras()):
            uv = cam.project(sample.joints3d)
            assert ((uv > 0) & (uv < 64)).all()  # the crop contains the body
            image = sample.images[v].astype(int)
            for dx in (0, 24):  # on the joints, then 24 px (over a third of the crop) aside
                x = np.clip(np.round(uv[:, 0] + dx).astype(int), 0, 63)
                y = np.clip(np.round(uv[:, 1]).astype(int), 0, 63)
                green = np.abs(image[y, x] - GREEN).sum(axis=1) < 90
                (on_body if dx == 0 else off_body).append(~green)
    assert np.concatenate(on_body).mean() == 1.0
    assert np.concatenate(off_body).mean() < 0.5


def test_crop_keeps_the_body_inside_with_margin(rng):
    pose = standing_pose(0.4)
    full = h36m_cameras("S1")[1].undistorted()
    uv, _ = render.pinhole_project(full, pose)
    box = studio.crop_box(uv, margin=0.2, jitter=0.05, rng=rng)
    cam = full.crop_and_resize(box, 32)
    crop_uv = cam.project(pose)
    assert (crop_uv > 0.1 * 32).all() and (crop_uv < 0.9 * 32).all()
    assert box[2] - box[0] == pytest.approx(box[3] - box[1])


def test_random_rig_surrounds_and_sees_the_subject():
    rig = studio.random_rig(6, np.random.default_rng(3))
    assert len(rig) == 6 and len({c.name for c in rig}) == 6
    uv = np.stack([c.project(standing_pose()) for c in rig])
    assert ((uv > 0) & (uv < 1000)).all()
    azimuths = np.sort([np.arctan2(c.center[1], c.center[0]) for c in rig])
    gaps = np.diff(np.concatenate([azimuths, azimuths[:1] + 2 * np.pi]))
    assert gaps.max() < 2 * np.pi / 6 + 0.6  # spread around, no big hole


def test_background_is_one_room_seen_from_each_camera(rng):
    backdrop = render.make_backdrop(rng)
    cams = [c.undistorted().crop_and_resize((0, 0, 1000, 1000), 48) for c in h36m_cameras()]
    images = [render.render_background(c, 48, backdrop) for c in cams]
    for img in images:  # the floor is in the lower part of each image, the wall above
        assert img.shape == (48, 48, 3) and img.std() > 1
    big = render.render_background(cams[0].crop_and_resize((0, 0, 48, 48), 128), 128, backdrop)
    small = render.render_background(cams[0], 48, backdrop)
    import cv2
    down = cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(down - small).mean() < 20  # half-resolution tracing matches full


def test_render_view_needs_a_square_pinhole_camera(rng):
    cam = h36m_cameras()[0]
    look, backdrop = render.make_appearance(rng), render.make_backdrop(rng)
    with pytest.raises(ValueError, match="square"):
        render.render_view(standing_pose(), cam, look, backdrop)
    cropped = cam.crop_and_resize((0, 0, 1000, 1000), 32)
    with pytest.raises(ValueError, match="pinhole"):
        render.render_view(standing_pose(), cropped, look, backdrop)
    with pytest.raises(ValueError, match="17"):
        render.draw_body(np.zeros((32, 32, 3), np.uint8), np.zeros((16, 3)),
                         cropped.undistorted(), look)


def test_views_that_cannot_see_the_whole_body_are_marked_missing(rng):
    look, backdrop = render.make_appearance(rng), render.make_backdrop(rng)
    rig = [c.undistorted() for c in h36m_cameras("S1")]
    rig[1] = rig[1].crop_and_resize((0, 0, 100, 100), 100)  # camera 1 sees only a corner
    images, cams = studio.render_tuple(standing_pose(), rig, look, backdrop, 32, rng)
    assert images[1] is None and cams[1] is None
    assert all(images[v] is not None and cams[v] is not None for v in (0, 2, 3))
    pose = standing_pose()
    pose[:, :2] += rig[0].center[:2] * 0.99  # right under camera 0
    images, cams = studio.render_tuple(pose, rig, look, backdrop, 32, rng)
    assert images[0] is None and cams[0] is None


def test_write_dataset_helper_round_trips(tmp_path):
    manifest = write_dataset(tmp_path, {"labeled": ("S1",)}, frames=2, image_size=32)
    assert manifest["roles"]["labeled"]["samples"] == 2


def _dressed(seed: int, **garments) -> render.Appearance:
    """The first dressed look from seed on whose garments include `garments`."""
    for s in range(seed, seed + 200):
        look = render.make_appearance(np.random.default_rng(s))
        if garments.items() <= look.garments.items():
            return look
    raise AssertionError(garments)


def test_people_are_dressed_alike_on_both_sides():
    look = _dressed(0)
    for b, (p, c) in enumerate(BONES):
        name = JOINT_NAMES[c]
        if name.startswith("left_"):
            mirror = BONES.index((J[JOINT_NAMES[p].replace("left_", "right_")],
                                  J[name.replace("left_", "right_")]))
            np.testing.assert_array_equal(look.bone_colours[b], look.bone_colours[mirror])


@pytest.mark.parametrize("sleeves,legs", [("short", "shorts"), ("long", "long")])
def test_short_sleeves_and_shorts_bare_forearms_and_shins(sleeves, legs):
    look = _dressed(0, sleeves=sleeves, legs=legs)
    for bones, bare in ((render.FOREARM_BONES, sleeves == "short"),
                        (render.SHIN_BONES, legs == "shorts")):
        for b in bones:
            skin = np.array_equal(look.bone_colours[b], look.head_colour)
            assert skin == bare and (not look.bands[b] or not bare), (b, look.garments)
    # Shirt and trousers themselves are never skin.
    for b in render.TORSO_BONES + render.HIP_THIGH_BONES:
        assert not np.array_equal(look.bone_colours[b], look.head_colour)


def test_the_face_is_drawn_on_the_side_the_body_faces(rng):
    """A standing pose seen from the front shows the eyes, from the back it does not."""
    look = dataclasses.replace(_dressed(0), bone_colours=np.full((len(BONES), 3), 150.0),
                               head_colour=np.array([230.0, 190.0, 160.0]),
                               hair_colour=np.array([200.0, 200.0, 60.0]),
                               shoe_colour=np.array([90.0, 90.0, 220.0]))
    cam = _front_camera(size=128)
    counts = []
    for yaw in (0.0, np.pi):  # facing the camera, then turned away
        image = np.full((128, 128, 3), 128, np.uint8)
        render.draw_body(image, standing_pose(yaw), cam, look)
        counts.append(int((np.abs(image.astype(int) - render.FACE_COLOUR).sum(-1) < 40).sum()))
    assert counts[0] > 0 and counts[1] == 0, counts


@pytest.mark.parametrize("yaw", [0.0, 1.0, 2.5, -2.0])
def test_feet_point_the_way_the_hips_face(yaw):
    pose = standing_pose(yaw)  # faces -y turned by yaw
    forward = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    np.testing.assert_allclose(render.facing(pose), forward, atol=1e-9)
    for heel, toe in render._foot_ends(pose):
        along = (toe - heel)[:2] / np.linalg.norm((toe - heel)[:2])
        assert along @ forward[:2] > 0.99
        assert min(heel[2], toe[2]) > 0  # on the floor, not through it


def test_a_subject_looks_and_moves_alike_in_every_clip_and_unlike_the_others():
    config = studio.StudioConfig()
    subjects = [s for role in config.roles.values() for s in role]
    looks = {s: studio.subject_appearance(s, config) for s in subjects}
    styles = {s: studio.subject_style(s, config.seed) for s in subjects}
    again = studio.subject_appearance("S9", config)
    np.testing.assert_array_equal(again.bone_colours, looks["S9"].bone_colours)
    assert again.garments == looks["S9"].garments and again.girth == looks["S9"].girth
    assert studio.subject_style("S9", config.seed) == styles["S9"]
    for i, a in enumerate(subjects):
        for b in subjects[i + 1:]:
            assert not np.allclose(looks[a].bone_colours, looks[b].bone_colours), (a, b)
            assert styles[a] != styles[b]
    # the girth is the body's build
    assert looks["S1"].girth == studio.subject_body("S1", config.seed).build
    sides = studio.subject_appearance("S1", dataclasses.replace(config, look="sides"))
    assert sides.garments == {} and sides.girth == looks["S1"].girth
