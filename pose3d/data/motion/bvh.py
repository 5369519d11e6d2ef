"""BVH motion capture files: parser, forward kinematics, unit and up-axis detection,
resampling, and conversion to 17-joint Human3.6M poses (world mm, z up, floor at 0)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from pose3d.data.motion.kinematics import euler_to_matrix, forward_kinematics
from pose3d.skeleton.bvh_map import bvh_joint_map, h36m17_from_bvh, rest_pose
from pose3d.skeleton.h36m import JOINT_INDEX, ROOT

END_SITE_SUFFIX = "_End"

# Length units seen in BVH files, in mm per file unit. "cmu" is the CMU ASF unit
# (1/0.45 inch) that the usual CMU-to-BVH conversions keep.
UNIT_SCALES_MM: dict[str, float] = {
    "mm": 1.0, "cm": 10.0, "m": 1000.0, "inch": 25.4, "cmu": 25.4 / 0.45,
}
TYPICAL_HEIGHT_MM = 1700.0
SOLE_FRACTION = 0.015  # the sole lies about this fraction of the height below the toe joint
_HEAD = JOINT_INDEX["head"]
_ANKLES = (JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"])


@dataclass(frozen=True)
class BvhClip:
    """A parsed BVH file. End sites are joints of their own, named '<parent>_End', with no
    channels.

    names, parents: [J]; offsets: [J, 3] file units; channels: per joint, e.g.
    ('Xposition', 'Yposition', 'Zposition', 'Zrotation', 'Yrotation', 'Xrotation');
    frame_time: seconds; motion: [T, C] channel values (degrees, file units) in the
    order of the joints and their channels.
    """

    name: str
    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    frame_time: float
    motion: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


class _Tokens:
    def __init__(self, text: str, source: str):
        self.items = text.replace("{", " { ").replace("}", " } ").split()
        self.pos = 0
        self.source = source

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise ValueError(f"{self.source}: file ends early (truncated?) while reading {what}")
        self.pos += 1
        return self.items[self.pos - 1]

    def expect(self, word: str) -> None:
        got = self.next(repr(word))
        if got.lower() != word.lower():
            raise ValueError(f"{self.source}: expected {word!r}, found {got!r}")

    def number(self, what: str) -> float:
        token = self.next(what)
        try:
            return float(token)
        except ValueError:
            raise ValueError(f"{self.source}: expected a number for {what}, "
                             f"found {token!r}") from None


def _parse_joint(tok: _Tokens, name: str, parent: int, out: dict) -> None:
    index = len(out["names"])
    out["names"].append(name)
    out["parents"].append(parent)
    tok.expect("{")
    tok.expect("OFFSET")
    out["offsets"].append([tok.number(f"{name} OFFSET") for _ in range(3)])
    channels: tuple[str, ...] = ()
    if tok.items[tok.pos:tok.pos + 1] == ["CHANNELS"]:
        tok.pos += 1
        count = int(tok.number(f"{name} CHANNELS count"))
        channels = tuple(tok.next(f"{name} channel") for _ in range(count))
        bad = [c for c in channels if c[1:].lower() not in ("position", "rotation")
               or c[0].lower() not in "xyz"]
        if bad:
            raise ValueError(f"{tok.source}: joint {name} has unknown channels {bad}")
    out["channels"].append(channels)
    while True:
        word = tok.next(f"the body of joint {name}")
        if word == "}":
            return
        if word.upper() == "JOINT":
            _parse_joint(tok, tok.next("a joint name"), index, out)
        elif word.lower() == "end":
            tok.expect("Site")
            _parse_joint(tok, name + END_SITE_SUFFIX, index, out)
        else:
            raise ValueError(f"{tok.source}: unexpected {word!r} in joint {name}")


def _parse_motion(tok: _Tokens, num_channels: int) -> tuple[float, np.ndarray]:
    tok.expect("MOTION")
    tok.expect("Frames:")
    num_frames = int(tok.number("Frames"))
    tok.expect("Frame")
    tok.expect("Time:")
    frame_time = tok.number("Frame Time")
    if num_frames < 1 or frame_time <= 0:
        raise ValueError(f"{tok.source}: needs Frames >= 1 and Frame Time > 0, got "
                         f"{num_frames} and {frame_time}")
    values = tok.items[tok.pos:]
    expected = num_frames * num_channels
    if len(values) < expected:
        raise ValueError(f"{tok.source}: truncated motion: {num_frames} frames x "
                         f"{num_channels} channels need {expected} values, found {len(values)}")
    try:
        motion = np.array(values[:expected], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{tok.source}: motion data holds a value that is not a number") \
            from None
    return frame_time, motion.reshape(num_frames, num_channels)


def load_bvh(path: str | os.PathLike) -> BvhClip:
    """Parse a BVH file. Raises FileNotFoundError, or ValueError naming what is malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no BVH file at {path}")
    tok = _Tokens(path.read_text(errors="replace"), str(path))
    tok.expect("HIERARCHY")
    tok.expect("ROOT")
    out: dict = {"names": [], "parents": [], "offsets": [], "channels": []}
    _parse_joint(tok, tok.next("the root name"), -1, out)
    frame_time, motion = _parse_motion(tok, sum(len(c) for c in out["channels"]))
    if len(set(out["names"])) != len(out["names"]):
        raise ValueError(f"{path}: joint names are not unique")
    return BvhClip(path.stem, tuple(out["names"]), tuple(out["parents"]),
                   np.array(out["offsets"], dtype=np.float64), tuple(out["channels"]),
                   frame_time, motion)


def local_transforms(clip: BvhClip) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame local rotations [T, J, 3, 3] and translations [T, J, 3] (file units):
    a joint's translation is its OFFSET plus its position channels, if any."""
    num_frames, num_joints = clip.num_frames, len(clip.names)
    rot = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
    trans = np.broadcast_to(clip.offsets, (num_frames, num_joints, 3)).copy()
    column = 0
    for j, channels in enumerate(clip.channels):
        cols = clip.motion[:, column:column + len(channels)]
        column += len(channels)
        order = "".join(c[0].lower() for c in channels if c.lower().endswith("rotation"))
        rot_cols = [k for k, c in enumerate(channels) if c.lower().endswith("rotation")]
        if order:
            rot[:, j] = euler_to_matrix(np.radians(cols[:, rot_cols]), order)
        for k, c in enumerate(channels):
            if c.lower().endswith("position"):
                trans[:, j, "xyz".index(c[0].lower())] += cols[:, k]
    return rot, trans


def _slerp(q0: np.ndarray, q1: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions [..., 4] by frac [...]."""
    dot = (q0 * q1).sum(-1)
    q1 = np.where(dot[..., None] < 0, -q1, q1)
    theta = np.arccos(np.clip(np.abs(dot), 0.0, 1.0))[..., None]
    frac = frac[..., None]
    small = theta < 1e-6
    sin = np.where(small, 1.0, np.sin(theta))
    w0 = np.where(small, 1 - frac, np.sin((1 - frac) * theta) / sin)
    w1 = np.where(small, frac, np.sin(frac * theta) / sin)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def resample(rot: np.ndarray, trans: np.ndarray, src_fps: float,
             fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample local rotations [T, J, 3, 3] (slerp) and translations [T, J, 3] (linear)
    from `src_fps` to `fps`, over the same time span."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    num_frames, num_joints = rot.shape[:2]
    if num_frames == 1:
        return rot, trans
    src = np.arange(int(np.floor((num_frames - 1) / src_fps * fps + 1e-6)) + 1) * src_fps / fps
    i0 = np.minimum(src.astype(int), num_frames - 2)
    frac = (src - i0)[:, None]  # [T', 1]
    quat = Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_quat().reshape(num_frames, -1, 4)
    q = _slerp(quat[i0], quat[i0 + 1], np.broadcast_to(frac, (len(src), num_joints)))
    out_rot = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(len(src), -1, 3, 3)
    out_trans = trans[i0] + frac[..., None] * (trans[i0 + 1] - trans[i0])
    return out_rot, out_trans


def joint_positions(clip: BvhClip, fps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions [T, J, 3] and global rotations [T, J, 3, 3] of every BVH joint (end sites
    included), file units and axes, resampled to `fps` when given."""
    rot, trans = local_transforms(clip)
    if fps is not None and abs(fps - clip.fps) > 1e-6:
        rot, trans = resample(rot, trans, clip.fps, fps)
    return forward_kinematics(clip.parents, trans, rot, trans[:, 0])




def up_rotation(up: np.ndarray) -> np.ndarray:
    """A proper rotation [3, 3] taking the file axis nearest to `up` (signed) onto +z."""
    axis = int(np.argmax(np.abs(up)))
    new_z = np.zeros(3)
    new_z[axis] = np.sign(up[axis])
    new_x = np.zeros(3)
    new_x[(axis + 1) % 3 if axis == 0 else 0] = 1.0
    return np.stack([new_x, np.cross(new_z, new_x), new_z])


def unit_scale(height: float, unit: str | float | None = None) -> float:
    """Millimetres per file unit: `unit` when given (a name in UNIT_SCALES_MM or a number),
    else the known unit that makes a skeleton `height` units tall closest to 1.7 m."""
    if isinstance(unit, str):
        if unit not in UNIT_SCALES_MM:
            raise ValueError(f"unknown unit {unit!r}; known: {sorted(UNIT_SCALES_MM)}")
        return UNIT_SCALES_MM[unit]
    if unit is not None:
        if not unit > 0:
            raise ValueError(f"unit scale must be positive mm per unit, got {unit}")
        return float(unit)
    if not height > 0:
        raise ValueError(f"skeleton height must be positive, got {height}")
    return min(UNIT_SCALES_MM.values(),
               key=lambda s: abs(np.log(height * s / TYPICAL_HEIGHT_MM)))


def _drop_leading_tpose(poses: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop frame 0 when the body's shape jumps from it to frame 1 (a T-pose calibration
    frame, common in CMU conversions). poses: [T, 17, 3], world: [T, J, 3] mm."""
    if len(poses) < 4:
        return poses, world
    shape = poses[:4] - poses[:4, ROOT:ROOT + 1]
    step = np.linalg.norm(np.diff(shape, axis=0), axis=-1).mean(axis=-1)  # [3] mm
    if step[0] > 30.0 and step[0] > 5 * max(step[1], step[2]):
        return poses[1:], world[1:]
    return poses, world


def bvh_to_h36m17(clip: BvhClip, fps: float | None = None, *,
                  unit: str | float | None = None) -> np.ndarray:
    """The 17-joint poses of a BVH clip: [T, 17, 3] float32, world mm, z up, the floor at
    z = 0 and the root's horizontal path centred on the origin.

    fps: resample to this rate (slerp of joint rotations), else keep the file's rate.
    unit: mm per file unit, or a name in UNIT_SCALES_MM; detected from the body height
    when None. The up axis is the file axis closest to the rest skeleton's feet -> head.
    """
    jmap = bvh_joint_map(clip.names, clip.parents, clip.offsets)
    pos, rot = joint_positions(clip, fps)
    poses = h36m17_from_bvh(pos, rot[:, jmap.head_base], jmap)
    rest = rest_pose(clip.parents, clip.offsets)
    rest17 = h36m17_from_bvh(rest[None], np.eye(3)[None], jmap)[0]
    head, ankles = rest17[_HEAD], rest17[list(_ANKLES)].mean(axis=0)
    to_z = up_rotation(head - ankles)
    height = float(to_z[2] @ head - (rest @ to_z[2]).min())  # file units
    scale = unit_scale(height, unit)
    poses, world = _drop_leading_tpose(scale * poses @ to_z.T, scale * pos @ to_z.T)
    floor = np.percentile(world[..., 2].min(axis=1), 5) - SOLE_FRACTION * height * scale
    poses[..., 2] -= floor
    root = poses[:, ROOT, :2]
    poses[..., :2] -= (root.min(axis=0) + root.max(axis=0)) / 2
    return poses.astype(np.float32)


def clips_from_bvh_files(paths: Iterable[str | os.PathLike],
                         fps: float) -> list[tuple[str, np.ndarray]]:
    """(name, poses [T, 17, 3] world mm) for each BVH file, resampled to `fps`; the name is
    the file's stem."""
    out = []
    for path in paths:
        clip = load_bvh(path)
        out.append((clip.name, bvh_to_h36m17(clip, fps)))
    return out
