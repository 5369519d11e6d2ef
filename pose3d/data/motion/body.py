"""Per-subject body proportions of the 17-joint skeleton and its rest pose.

Body frame: x forward, y to the subject's left, z up, millimetres. The rest pose stands
upright with the arms hanging; the pelvis (root) is at the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from pose3d.skeleton.h36m import BONES, JOINT_INDEX, NUM_JOINTS

HEIGHT_RANGE_MM = (1500.0, 1950.0)
BUILD_RANGE = (0.8, 1.3)  # slim .. heavy: flesh radius (girth) relative to an average adult
LEG_RATIO_SPREAD = 0.08  # legs longer (torso shorter) or shorter, before the stature rescale
ARM_SPREAD = 0.06
_LEGS, _TRUNK, _ARMS = ("thigh", "shin"), ("lower_back", "upper_back"), ("upper_arm", "forearm")

# Segment sizes as fractions of stature (after anthropometric tables: hip height ~0.53,
# knee ~0.285, ankle ~0.039, shoulder ~0.82 of stature).
_PROPORTIONS = {
    "hip_width": 0.125, "hip_drop": 0.012, "thigh": 0.245, "shin": 0.246,
    "ankle_height": 0.039, "lower_back": 0.130, "upper_back": 0.148, "neck_up": 0.070,
    "neck_forward": 0.028, "head_up": 0.080, "head_back": 0.015, "crown": 0.030,
    "shoulder_width": 0.195,
    "shoulder_drop": 0.012, "upper_arm": 0.168, "forearm": 0.150,
}
_VERTICAL = ("ankle_height", "shin", "thigh", "hip_drop", "lower_back", "upper_back",
             "neck_up", "head_up", "crown")


@dataclass(frozen=True)
class BodyShape:
    """Segment sizes in mm. Widths are between joint centres; `hip_drop` is how far the
    hip joints sit below the pelvis joint, `shoulder_drop` the shoulders below the thorax;
    `neck_*` place the neck/nose joint from the thorax and `head_*` the head joint (the
    upper head, as in Human3.6M) from the neck/nose joint; `crown` is the rest of the way
    to the top of the head. `build` is not a size: the flesh around the bones relative to
    an average adult (1; BUILD_RANGE slim .. heavy), the renderer's girth."""

    hip_width: float
    hip_drop: float
    thigh: float
    shin: float
    ankle_height: float
    lower_back: float
    upper_back: float
    neck_up: float
    neck_forward: float
    head_up: float
    head_back: float
    crown: float
    shoulder_width: float
    shoulder_drop: float
    upper_arm: float
    forearm: float
    build: float = 1.0

    def __post_init__(self) -> None:
        bad = [f.name for f in fields(self) if not getattr(self, f.name) > 0]
        if bad:
            raise ValueError(f"BodyShape sizes must be positive mm: {bad}")

    @property
    def height(self) -> float:
        """Stature: floor to the top of the head when standing upright, mm."""
        return float(sum(getattr(self, name) for name in _VERTICAL))

    def rest_offsets(self) -> np.ndarray:
        """Each joint's offset from its parent in the rest pose, body frame: [17, 3] mm."""
        half_hip, half_sh = self.hip_width / 2, self.shoulder_width / 2
        rows = {
            "right_hip": (0, -half_hip, -self.hip_drop), "right_knee": (0, 0, -self.thigh),
            "right_ankle": (0, 0, -self.shin),
            "left_hip": (0, half_hip, -self.hip_drop), "left_knee": (0, 0, -self.thigh),
            "left_ankle": (0, 0, -self.shin),
            "spine": (0, 0, self.lower_back), "thorax": (0, 0, self.upper_back),
            "neck": (self.neck_forward, 0, self.neck_up),
            "head": (-self.head_back, 0, self.head_up),
            "left_shoulder": (0, half_sh, -self.shoulder_drop),
            "left_elbow": (0, 0, -self.upper_arm), "left_wrist": (0, 0, -self.forearm),
            "right_shoulder": (0, -half_sh, -self.shoulder_drop),
            "right_elbow": (0, 0, -self.upper_arm), "right_wrist": (0, 0, -self.forearm),
        }
        out = np.zeros((NUM_JOINTS, 3))
        for name, offset in rows.items():
            out[JOINT_INDEX[name]] = offset
        return out

    def bone_lengths(self) -> np.ndarray:
        """Length of each bone in `pose3d.skeleton.h36m.BONES` order: [16] mm."""
        offsets = self.rest_offsets()
        return np.array([np.linalg.norm(offsets[child]) for _, child in BONES])

    @property
    def girth(self) -> float:
        """Radius scale of the rendered body (pose3d.data.render.Appearance.girth)."""
        return self.build


def sample_subject(seed: int) -> BodyShape:
    """A random adult body: stature uniform in 1.50-1.95 m; a build (BUILD_RANGE) that
    widens hips and shoulders and sets the girth; legs long or short against the torso
    (LEG_RATIO_SPREAD), arms long or short (ARM_SPREAD); each segment's proportion varied by
    about 3% on top; then the vertical chain rescaled to the stature."""
    rng = np.random.default_rng(seed)
    height = rng.uniform(*HEIGHT_RANGE_MM)
    build = rng.uniform(*BUILD_RANGE)
    legs = rng.uniform(-LEG_RATIO_SPREAD, LEG_RATIO_SPREAD)
    arms = rng.uniform(-ARM_SPREAD, ARM_SPREAD)
    # Joint centres spread less than the flesh around them: widths follow sqrt(build).
    scale = {name: np.sqrt(build) for name in _PROPORTIONS if "width" in name}
    scale.update({name: 1 + legs for name in _LEGS})
    scale.update({name: 1 - legs for name in _TRUNK})
    scale.update({name: 1 + arms for name in _ARMS})
    sizes = {}
    for name, fraction in _PROPORTIONS.items():
        jitter = np.clip(rng.normal(0.0, 0.03), -0.06, 0.06)
        sizes[name] = fraction * height * scale.get(name, 1.0) * (1.0 + jitter)
    stretch = height / sum(sizes[name] for name in _VERTICAL)
    for name in _VERTICAL:
        sizes[name] *= stretch
    return BodyShape(**sizes, build=float(build))
