import numpy as np
import pytest

from pose3d.data.motion import (
    ACTIONS,
    BodyShape,
    MotionStyle,
    generate_clip,
    sample_style,
    sample_subject,
)
from pose3d.data.motion.body import HEIGHT_RANGE_MM
from pose3d.skeleton.h36m import BONES, JOINT_INDEX

J = JOINT_INDEX
FPS = 25.0


def _clip(action: str, seed: int = 0, frames: int = 200, fps: float = FPS) -> np.ndarray:
    return generate_clip(action, sample_subject(seed), frames, fps, np.random.default_rng(seed),
                         style=sample_style(seed))


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between vectors [..., 3]."""
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _forward(poses: np.ndarray) -> np.ndarray:
    """The way the trunk faces, from the shoulders and the spine: [T, 3]."""
    left = poses[:, J["left_shoulder"]] - poses[:, J["right_shoulder"]]
    up = poses[:, J["thorax"]] - poses[:, J["pelvis"]]
    return _unit(np.cross(left, up))


def _heading(poses: np.ndarray) -> np.ndarray:
    """Facing angle of the hips in the floor plane, unwrapped, radians: [T]."""
    left = poses[:, J["left_hip"]] - poses[:, J["right_hip"]]
    return np.unwrap(np.arctan2(-left[:, 0], left[:, 1]))


def test_the_issue_actions_are_there():
    required = {"walking", "sitting_down", "picking_up", "reaching", "waving", "squatting",
                "turning", "bending"}
    assert required <= set(ACTIONS)


def test_subjects_vary_in_size_and_proportion():
    bodies = [sample_subject(s) for s in range(30)]
    heights = np.array([b.height for b in bodies])
    assert (heights >= HEIGHT_RANGE_MM[0]).all() and (heights <= HEIGHT_RANGE_MM[1]).all()
    assert heights.std() > 60
    ratios = np.array([b.bone_lengths() / b.height for b in bodies])  # shape, not just size
    assert (ratios.std(axis=0) / ratios.mean(axis=0)).min() > 0.02
    assert sample_subject(3) == sample_subject(3)


def test_body_rejects_non_positive_sizes():
    sizes = {f: 100.0 for f in BodyShape.__dataclass_fields__}
    with pytest.raises(ValueError, match="thigh"):
        BodyShape(**{**sizes, "thigh": 0.0})


@pytest.mark.parametrize("action", ACTIONS)
def test_bones_keep_the_subject_lengths(action):
    body = sample_subject(7)
    poses = generate_clip(action, body, 60, FPS, np.random.default_rng(7))
    assert poses.shape == (60, 17, 3) and poses.dtype == np.float32
    lengths = np.stack([np.linalg.norm(poses[:, a] - poses[:, b], axis=-1) for a, b in BONES], 1)
    np.testing.assert_allclose(lengths, np.broadcast_to(body.bone_lengths(), lengths.shape),
                               atol=0.05)


@pytest.mark.parametrize("action", ACTIONS)
def test_knees_and_elbows_bend_one_way_within_range(action):
    poses = _clip(action, seed=1).astype(np.float64)
    for side in ("left", "right"):
        thigh = poses[:, J[f"{side}_knee"]] - poses[:, J[f"{side}_hip"]]
        shin = poses[:, J[f"{side}_ankle"]] - poses[:, J[f"{side}_knee"]]
        knee = _angle(thigh, shin)
        assert knee.max() <= 146
        pelvis_left = poses[:, J["left_hip"]] - poses[:, J["right_hip"]]
        bent = knee > 15  # the shin folds backwards: thigh x shin points to the subject's left
        assert ((np.cross(thigh, shin) * pelvis_left).sum(-1)[bent] > 0).all()

        upper = poses[:, J[f"{side}_elbow"]] - poses[:, J[f"{side}_shoulder"]]
        fore = poses[:, J[f"{side}_wrist"]] - poses[:, J[f"{side}_elbow"]]
        assert _angle(upper, fore).max() <= 146
        down = _unit(poses[:, J["pelvis"]] - poses[:, J["thorax"]])
        hanging = (_angle(upper, down) < 30) & (_angle(upper, fore) > 30)
        # an arm at the side folds forwards (or outwards), never backwards
        assert ((_unit(fore) * _forward(poses)).sum(-1)[hanging] > -0.1).all()


@pytest.mark.parametrize("action", ACTIONS)
def test_feet_stay_on_the_floor(action):
    body = sample_subject(2)
    poses = generate_clip(action, body, 150, FPS, np.random.default_rng(2))
    lowest_ankle = poses[:, [J["left_ankle"], J["right_ankle"]], 2].min(axis=1)
    assert (lowest_ankle >= body.ankle_height - 0.5).all()
    assert (lowest_ankle <= body.ankle_height + 10).all()
    assert (poses[..., 2] > 0).all()


@pytest.mark.parametrize("action", ACTIONS)
def test_no_obvious_self_penetration(action):
    poses = _clip(action, seed=4).astype(np.float64)
    for a, b in (("left_knee", "right_knee"), ("left_ankle", "right_ankle")):
        assert np.linalg.norm(poses[:, J[a]] - poses[:, J[b]], axis=-1).min() > 80
    pelvis, thorax = poses[:, J["pelvis"]], poses[:, J["thorax"]]
    axis = thorax - pelvis
    for joint in ("left_elbow", "left_wrist", "right_elbow", "right_wrist"):
        p = poses[:, J[joint]]
        t = np.clip(((p - pelvis) * axis).sum(-1) / (axis * axis).sum(-1), 0, 1)
        distance_to_spine = np.linalg.norm(p - pelvis - t[:, None] * axis, axis=-1)
        assert distance_to_spine.min() > 80


@pytest.mark.parametrize("action", ACTIONS)
def test_motion_is_smooth(action):
    poses = _clip(action, seed=5, frames=300, fps=100.0).astype(np.float64)
    second_difference = np.linalg.norm(np.diff(poses, n=2, axis=0), axis=-1)
    assert second_difference.max() < 10.0  # mm at 100 fps: below 100 m/s^2, no jumps


@pytest.mark.parametrize("action", ACTIONS)
def test_clip_is_reproducible_from_the_rng(action):
    body = sample_subject(0)
    a = generate_clip(action, body, 40, FPS, np.random.default_rng(11))
    b = generate_clip(action, body, 40, FPS, np.random.default_rng(11))
    c = generate_clip(action, body, 40, FPS, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 10


def test_root_stays_near_the_origin_and_facing_varies():
    facings = []
    for seed in range(8):
        poses = _clip("walking", seed=seed, frames=500)
        assert np.abs(poses[:, J["pelvis"], :2]).max() < 1300
        facings.append(_heading(poses[:1])[0])
    gaps = np.diff(np.sort(np.mod(facings, 2 * np.pi)))
    assert gaps.max() < np.pi  # initial facings spread around the circle


def _stature(seed: int) -> float:
    return sample_subject(seed).height


def test_each_action_does_what_it_says():
    seed, frames = 3, 250  # 10 s: at least one episode of every action
    height = _stature(seed)
    clips = {a: _clip(a, seed=seed, frames=frames).astype(np.float64) for a in ACTIONS}
    z = {a: p[..., 2] for a, p in clips.items()}

    def travel(p):  # how far the root gets, in mm, along the floor
        return np.ptp(p[:, J["pelvis"], :2], axis=0).max()

    def turned(p):
        return np.degrees(np.abs(np.diff(_heading(p))).sum())

    assert travel(clips["walking"]) > 1200 and turned(clips["walking"]) > 90
    assert turned(clips["turning"]) > 90
    for still in ("turning", "sitting_down", "bending", "picking_up", "reaching", "waving",
                  "squatting", "directions"):
        assert travel(clips[still]) < 600, still
    assert z["sitting_down"][:, J["pelvis"]].min() < 0.4 * height
    assert z["squatting"][:, J["pelvis"]].min() < 0.45 * height
    assert z["bending"][:, J["head"]].min() < 0.8 * height
    assert z["bending"][:, J["pelvis"]].min() > 0.45 * height
    wrists = [J["left_wrist"], J["right_wrist"]]
    assert z["picking_up"][:, wrists].min() < 0.2 * height
    above_head = z["waving"][:, wrists].max(axis=1) > z["waving"][:, J["neck"]]
    assert above_head.mean() > 0.2
    for pointing in ("reaching", "directions"):
        p = clips[pointing]
        reach = np.linalg.norm((p[:, wrists] - p[:, [J["thorax"]]])[..., :2], axis=-1).max()
        assert reach > 0.25 * height, pointing
    for calm in ("walking", "turning", "sitting_down"):
        assert (z[calm][:, wrists].max(axis=1) < z[calm][:, J["thorax"]]).all(), calm


def test_actions_differ_from_each_other():
    def signature(p):
        rel = p - p[:, [J["pelvis"]]]
        return np.concatenate([rel.mean(0).ravel(), rel.std(0).ravel(),
                               [p[:, J["pelvis"], 2].mean(), p[:, J["pelvis"], 2].std()]])

    sigs = {a: signature(_clip(a, seed=6, frames=250).astype(np.float64)) for a in ACTIONS}
    for i, a in enumerate(ACTIONS):
        for b in ACTIONS[i + 1:]:
            assert np.linalg.norm(sigs[a] - sigs[b]) > 100, (a, b)


def test_bad_arguments_raise_clear_errors():
    body = sample_subject(0)
    with pytest.raises(ValueError, match="unknown action 'dancing'"):
        generate_clip("dancing", body, 10)
    with pytest.raises(ValueError, match="num_frames"):
        generate_clip("walking", body, 0)
    with pytest.raises(ValueError, match="fps"):
        generate_clip("walking", body, 10, fps=0.0)
    with pytest.raises(TypeError, match="BodyShape"):
        generate_clip("walking", {"height": 1700}, 10)


_EXTREME_STYLES = [MotionStyle(tempo=1.25, amplitude=1.3, stoop=12.0, lean=5.0, stance=-1.5),
                   MotionStyle(tempo=0.8, amplitude=0.7, stoop=-3.0, lean=-3.0, stance=4.0)]


@pytest.mark.parametrize("style", _EXTREME_STYLES)
@pytest.mark.parametrize("action", ACTIONS)
def test_the_most_extreme_styles_stay_physically_plausible(action, style):
    body = sample_subject(6)
    poses = generate_clip(action, body, 150, FPS, np.random.default_rng(6),
                          style=style).astype(np.float64)
    lowest_ankle = poses[:, [J["left_ankle"], J["right_ankle"]], 2].min(axis=1)
    assert (lowest_ankle >= body.ankle_height - 0.5).all()
    assert (lowest_ankle <= body.ankle_height + 10).all()
    assert (poses[..., 2] > 0).all()
    for a, b in (("left_knee", "right_knee"), ("left_ankle", "right_ankle")):
        assert np.linalg.norm(poses[:, J[a]] - poses[:, J[b]], axis=-1).min() > 80
    lengths = np.linalg.norm(poses[:, [c for _, c in BONES]] - poses[:, [p for p, _ in BONES]],
                             axis=-1)
    np.testing.assert_allclose(lengths, np.broadcast_to(body.bone_lengths(), lengths.shape),
                               rtol=1e-4)
    assert np.linalg.norm(np.diff(poses, n=2, axis=0), axis=-1).max() < 160  # 25 fps


def _walked_mm(style: MotionStyle) -> float:
    poses = generate_clip("walking", sample_subject(1), 100, FPS, np.random.default_rng(1),
                          style=style)
    return float(np.linalg.norm(np.diff(poses[:, J["pelvis"], :2], axis=0), axis=-1).sum())


def test_two_people_do_the_same_action_differently():
    """Same body, same random draws: a brisk person covers more ground in the same time, a
    stooping one carries the chest ahead of the pelvis, a wide stance puts the feet apart."""
    neutral = _walked_mm(MotionStyle())
    assert _walked_mm(MotionStyle(tempo=1.25)) > 1.15 * neutral
    assert _walked_mm(MotionStyle(tempo=0.8)) < 0.85 * neutral

    def stand(style: MotionStyle) -> np.ndarray:
        return generate_clip("waving", sample_subject(1), 20, FPS, np.random.default_rng(1),
                             style=style).astype(np.float64)

    def chest_ahead(poses: np.ndarray) -> float:
        across = poses[:, J["left_hip"]] - poses[:, J["right_hip"]]
        forward = np.cross(across, [0.0, 0.0, 1.0])[:, :2]
        forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
        ahead = (poses[:, J["thorax"], :2] - poses[:, J["pelvis"], :2]) * forward
        return float(ahead.sum(-1).mean())

    assert chest_ahead(stand(MotionStyle(stoop=12.0))) > chest_ahead(stand(MotionStyle())) + 20

    def feet_apart(poses: np.ndarray) -> float:
        return float(np.linalg.norm(poses[:, J["left_ankle"]] - poses[:, J["right_ankle"]],
                                    axis=-1).mean())

    assert feet_apart(stand(MotionStyle(stance=4.0))) > feet_apart(stand(MotionStyle())) + 40
