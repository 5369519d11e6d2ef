import functools
import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose3d.data.motion import bvh_to_h36m17, clips_from_bvh_files, load_bvh
from pose3d.data.motion.bvh import joint_positions
from pose3d.data.motion.kinematics import euler_to_matrix
from pose3d.skeleton.bvh_map import bvh_joint_map, detect_convention
from pose3d.skeleton.h36m import JOINT_INDEX

J = JOINT_INDEX
RIGID = [(J["pelvis"], J["left_hip"]), (J["pelvis"], J["right_hip"])] + [
    (J[f"{s}_{a}"], J[f"{s}_{b}"]) for s in ("left", "right")
    for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"), ("elbow", "wrist"))]

# A small skeleton with CMU ASF bone names, y up, in centimetres: (name, parent, offset).
ASF_SKELETON = [
    ("root", None, (0, 0, 0)),
    ("lhipjoint", "root", (0, 0, 0)), ("lfemur", "lhipjoint", (9, -8, 0)),
    ("ltibia", "lfemur", (0, -42, 0)), ("lfoot", "ltibia", (0, -42, 0)),
    ("rhipjoint", "root", (0, 0, 0)), ("rfemur", "rhipjoint", (-9, -8, 0)),
    ("rtibia", "rfemur", (0, -42, 0)), ("rfoot", "rtibia", (0, -42, 0)),
    ("lowerback", "root", (0, 0, 0)), ("upperback", "lowerback", (0, 12, 0)),
    ("thorax", "upperback", (0, 12, 0)), ("lowerneck", "thorax", (0, 12, 0)),
    ("upperneck", "lowerneck", (0, 8, 0)), ("head", "upperneck", (0, 9, 0)),
    ("lclavicle", "thorax", (0, 8, 0)), ("lhumerus", "lclavicle", (16, 0, 0)),
    ("lradius", "lhumerus", (0, -28, 0)), ("lwrist", "lradius", (0, -25, 0)),
    ("rclavicle", "thorax", (0, 8, 0)), ("rhumerus", "rclavicle", (-16, 0, 0)),
    ("rradius", "rhumerus", (0, -28, 0)), ("rwrist", "rradius", (0, -25, 0)),
]
END_SITES = {"lfoot": (0, -5, 12), "rfoot": (0, -5, 12), "head": (0, 10, 0),
             "lwrist": (0, -8, 0), "rwrist": (0, -8, 0)}
ROOT_HEIGHT = 97.0


def _bvh_text(frames: np.ndarray, scale: float = 1.0, z_up: bool = False,
              names: dict[str, str] | None = None) -> str:
    """A BVH file of ASF_SKELETON; frames: [T, 3 + 3 * joints] root position then ZXY
    rotations (degrees) per joint, in centimetres and y up before `scale` / `z_up`."""
    names = names or {}

    def vec(v):
        v = np.asarray(v, dtype=float) * scale
        return v[[0, 2, 1]] * [1, -1, 1] if z_up else v

    def write(name, depth):
        pad = "  " * depth
        offset = next(o for n, _, o in ASF_SKELETON if n == name)
        kind = "ROOT" if depth == 0 else "JOINT"
        chans = "6 Xposition Yposition Zposition" if depth == 0 else "3"
        lines = [f"{pad}{kind} {names.get(name, name)}", pad + "{",
                 f"{pad}  OFFSET " + " ".join(f"{x:.6f}" for x in vec(offset)),
                 f"{pad}  CHANNELS {chans} Zrotation Xrotation Yrotation"]
        for child, parent, _ in ASF_SKELETON:
            if parent == name:
                lines += write(child, depth + 1)
        if name in END_SITES:
            lines += [f"{pad}  End Site", pad + "  {",
                      f"{pad}    OFFSET " + " ".join(f"{x:.6f}" for x in vec(END_SITES[name])),
                      pad + "  }"]
        return lines + [pad + "}"]

    rows = []
    for f in frames:
        pos = vec(f[:3])
        rows.append(" ".join(f"{x:.6f}" for x in np.concatenate([pos, f[3:]])))
    return "\n".join(["HIERARCHY"] + write("root", 0)
                     + ["MOTION", f"Frames: {len(frames)}", "Frame Time: 0.033333"] + rows) + "\n"


def _frames(num_frames: int = 12, seed: int = 0) -> np.ndarray:
    """Root walking along z with small random joint rotations."""
    rng = np.random.default_rng(seed)
    out = np.zeros((num_frames, 3 + 3 * len(ASF_SKELETON)))
    out[:, 1] = ROOT_HEIGHT
    out[:, 2] = np.linspace(0, 40, num_frames)
    out[:, 6:] = rng.normal(0, 1, (num_frames, out.shape[1] - 6)).cumsum(0)
    return out


def _column(joint: str) -> int:
    """The Zrotation column of a non-root joint in _frames."""
    return 6 + 3 * ([n for n, _, _ in ASF_SKELETON].index(joint) - 1)


def _write(tmp_path, text: str, name: str = "clip.bvh"):
    path = tmp_path / name
    path.write_text(text)
    return path


@functools.cache
def _converted(path, fps: float = 30.0) -> np.ndarray:
    """The 17-joint poses of a mocap file (float64 copy-safe: callers do not write)."""
    return bvh_to_h36m17(load_bvh(path), fps=fps).astype(np.float64)


def _mocap_files(mocap_dir):
    files = sorted(mocap_dir.glob("*.bvh"))
    assert files
    return files


def test_every_mocap_clip_loads(mocap_dir):
    for path in _mocap_files(mocap_dir):
        clip = load_bvh(path)
        header = path.read_text()[:20000]
        assert clip.num_frames == int(re.search(r"Frames:\s*(\d+)", header).group(1))
        assert clip.fps == pytest.approx(120, rel=1e-3)
        assert clip.motion.shape[1] == sum(len(c) for c in clip.channels)
        poses = bvh_to_h36m17(clip, fps=25.0)
        assert poses.dtype == np.float32 and poses.shape[1:] == (17, 3)
        assert len(poses) == pytest.approx(clip.num_frames * 25 / 120, abs=2)
        assert np.isfinite(poses).all()


def test_mocap_poses_are_upright_human_sized_and_rigid(mocap_dir):
    for path in _mocap_files(mocap_dir):
        poses = _converted(path)
        for a, b in RIGID:
            length = np.linalg.norm(poses[:, a] - poses[:, b], axis=-1)
            # (CMU hip joints carry small rotations of their own: about 1 mm of play)
            assert length.std() < 2.0, (path.name, a, b)
        assert 1400 < poses[:, J["head"], 2].max() < 2100, path.name
        z = poses[..., 2]
        ankles = z[:, [J["left_ankle"], J["right_ankle"]]]
        assert (z[:, J["head"]] > z[:, J["pelvis"]]).all()
        assert (z[:, J["pelvis"]] > ankles.max(axis=1)).mean() > 0.95
        assert 20 < np.percentile(ankles.min(axis=1), 5) < 200  # ankles just above the floor
        assert z.min() > -30
        root = poses[:, J["pelvis"], :2]
        np.testing.assert_allclose((root.min(0) + root.max(0)) / 2, 0, atol=1.0)


def test_mocap_walkers_face_where_they_go(mocap_dir):
    for path in _mocap_files(mocap_dir):
        poses = _converted(path)
        velocity = np.diff(poses[:, J["pelvis"], :2], axis=0)
        face = (poses[:, J["neck"]] - poses[:, J["thorax"]])[1:, :2]
        moving = np.linalg.norm(velocity, axis=-1) > 8  # faster than 0.24 m/s
        assert moving.sum() > 10, path.name
        cosine = (velocity * face).sum(-1) / np.linalg.norm(velocity, axis=-1) \
            / np.linalg.norm(face, axis=-1)
        assert np.median(cosine[moving]) > 0.5, path.name  # (131_03 hops sideways at times)


def test_mocap_folder_has_both_naming_conventions(mocap_dir):
    seen = set()
    for path in _mocap_files(mocap_dir):
        clip = load_bvh(path)
        seen.add(detect_convention(clip.names))
        jmap = bvh_joint_map(clip.names, clip.parents, clip.offsets)
        assert len(set(jmap.direct.values())) == len(jmap.direct)
        poses = bvh_to_h36m17(clip)[:1].astype(np.float64)
        gaps = np.linalg.norm(poses[0, :, None] - poses[0, None], axis=-1)
        assert gaps[np.triu_indices(17, 1)].min() > 30, path.name  # 17 distinct points
    assert seen == {"motionbuilder", "3dsmax"}


def test_resampling_keeps_the_timeline(mocap_dir):
    clip = load_bvh(mocap_dir / "cmu_02_01.bvh")
    full = bvh_to_h36m17(clip).astype(np.float64)
    low = bvh_to_h36m17(clip, fps=25.0).astype(np.float64)
    assert len(full) == clip.num_frames
    for k in (0, 5, 10, 40):  # 25 fps frame k is 120 fps frame 4.8 k
        a, b = low[k] - low[k, :1], full[round(4.8 * k)] - full[round(4.8 * k), :1]
        np.testing.assert_allclose(a, b, atol=1.0)


def test_clips_from_bvh_files_names_them(mocap_dir):
    files = _mocap_files(mocap_dir)[:2]
    clips = clips_from_bvh_files(files, fps=10.0)
    assert [name for name, _ in clips] == [f.stem for f in files]
    assert all(p.shape[1:] == (17, 3) for _, p in clips)


def test_asf_names_map_and_units_are_detected(tmp_path):
    frames = _frames()
    reference = bvh_to_h36m17(load_bvh(_write(tmp_path, _bvh_text(frames), "cm.bvh")))
    assert detect_convention(load_bvh(tmp_path / "cm.bvh").names) == "asf"
    head = reference[:, J["head"], 2].max()
    assert 1500 < head < 1700  # 160 cm to the top of the head, in mm
    for scale, unit in ((10.0, "mm"), (0.01, "m"), (1 / 2.54, "inch")):
        clip = load_bvh(_write(tmp_path, _bvh_text(frames, scale=scale), f"{unit}.bvh"))
        np.testing.assert_allclose(bvh_to_h36m17(clip), reference, atol=0.05, err_msg=unit)
    explicit = bvh_to_h36m17(load_bvh(tmp_path / "cm.bvh"), unit="mm")
    np.testing.assert_allclose(explicit * 10, reference, rtol=1e-4, atol=0.5)


def test_z_up_files_come_out_the_same(tmp_path):
    frames = _frames()
    frames[:, 3:] = 0.0  # rotation channels would need re-expressing in the turned frame
    y_up = bvh_to_h36m17(load_bvh(_write(tmp_path, _bvh_text(frames), "y.bvh")))
    z_up = bvh_to_h36m17(load_bvh(_write(tmp_path, _bvh_text(frames, z_up=True), "z.bvh")))
    np.testing.assert_allclose(z_up[..., 2], y_up[..., 2], atol=0.05)
    for poses in (y_up, z_up):
        assert (poses[:, J["head"], 2] > poses[:, J["pelvis"], 2]).all()


def test_a_leading_t_pose_frame_is_dropped(tmp_path):
    frames = _frames()
    frames[0, 6:] = 0.0
    frames[0, _column("lhumerus")] = 80.0  # the arms swing up
    frames[0, _column("rhumerus")] = -80.0
    poses = bvh_to_h36m17(load_bvh(_write(tmp_path, _bvh_text(frames))))
    assert len(poses) == len(frames) - 1


def test_euler_channels_are_intrinsic_in_file_order():
    angles = np.array([30.0, -50.0, 70.0])
    for order in ("zxy", "zyx", "xyz"):
        ours = euler_to_matrix(np.radians(angles), order)
        theirs = Rotation.from_euler(order.upper(), angles, degrees=True).as_matrix()
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_forward_kinematics_follows_the_channels(tmp_path):
    frames = _frames(2)
    frames[:, 6:] = 0.0
    frames[1, 3:6] = [0.0, 0.0, 90.0]  # root Yrotation 90: the left hip (+x) turns to -z
    clip = load_bvh(_write(tmp_path, _bvh_text(frames)))
    pos, _ = joint_positions(clip)
    hip = clip.names.index("lfemur")
    np.testing.assert_allclose(pos[0, hip] - pos[0, 0], [9, -8, 0], atol=1e-9)
    np.testing.assert_allclose(pos[1, hip] - pos[1, 0], [0, -8, -9], atol=1e-9)


def test_bad_bvh_input_raises_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no BVH file"):
        load_bvh(tmp_path / "missing.bvh")
    text = _bvh_text(_frames())
    with pytest.raises(ValueError, match="truncated motion"):
        load_bvh(_write(tmp_path, text[: text.rindex("\n", 0, len(text) - 1)], "short.bvh"))
    with pytest.raises(ValueError, match="ends early"):
        load_bvh(_write(tmp_path, text[: text.index("lradius")], "cut.bvh"))
    with pytest.raises(ValueError, match="not a number"):
        load_bvh(_write(tmp_path, text.replace("0.033333\n0", "0.033333\nx"), "nan.bvh"))
    with pytest.raises(ValueError, match="expected 'HIERARCHY'"):
        load_bvh(_write(tmp_path, "hello\n", "junk.bvh"))
    odd = _bvh_text(_frames(), names={"lfemur": "thigh_l", "rfemur": "thigh_r"})
    with pytest.raises(ValueError, match="naming convention"):
        bvh_to_h36m17(load_bvh(_write(tmp_path, odd, "odd.bvh")))
    with pytest.raises(ValueError, match="unknown unit"):
        bvh_to_h36m17(load_bvh(_write(tmp_path, text)), unit="furlong")
    with pytest.raises(ValueError, match="fps"):
        bvh_to_h36m17(load_bvh(tmp_path / "clip.bvh"), fps=0.0)
