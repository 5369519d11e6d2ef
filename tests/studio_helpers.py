"""Small poses and datasets for the data tests (no dependence on pose3d.data.motion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pose3d.data import studio
from pose3d.data.shards import ShardSetWriter
from pose3d.skeleton import JOINT_NAMES

# A relaxed standing pose, world mm, z up, facing -y, subject's left towards +x.
_STANDING = {
    "pelvis": (0, 0, 950), "right_hip": (-130, 0, 950), "right_knee": (-140, 30, 520),
    "right_ankle": (-150, 0, 90), "left_hip": (130, 0, 950), "left_knee": (150, 60, 520),
    "left_ankle": (160, 40, 90), "spine": (0, 0, 1180), "thorax": (0, 0, 1420),
    "neck": (0, -20, 1520), "head": (0, -10, 1700), "left_shoulder": (180, 0, 1400),
    "left_elbow": (300, -80, 1150), "left_wrist": (380, -250, 1000),
    "right_shoulder": (-180, 0, 1400), "right_elbow": (-330, 0, 1180),
    "right_wrist": (-420, 30, 950),
}


def standing_pose(yaw: float = 0.0, shift=(0.0, 0.0)) -> np.ndarray:
    """[17, 3] world mm, turned by `yaw` radians about the vertical through the pelvis."""
    pose = np.array([_STANDING[name] for name in JOINT_NAMES], dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    pose = pose @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T
    pose[:, :2] += shift
    return pose


def turning_clip(frames: int, seed: int = 0) -> np.ndarray:
    """[T, 17, 3]: the standing pose turning on the spot and drifting a little."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 2 * np.pi)
    return np.stack([standing_pose(start + 0.3 * t, (40.0 * t, -25.0 * t))
                     for t in range(frames)])


def write_dataset(out: Path, roles: dict[str, tuple[str, ...]], *, clips: int = 1,
                  frames: int = 4, image_size: int = 48, samples_per_shard: int = 3,
                  cameras: str = "h36m", actions: tuple[str, ...] = ("turning",)) -> dict:
    """Render and write a small shard set; returns the manifest."""
    config = studio.StudioConfig(roles=roles, clips_per_action=clips, frames_per_clip=frames,
                                 frame_step=1, image_size=image_size, cameras=cameras)
    with ShardSetWriter(out, samples_per_shard) as writer:
        for job in studio.plan_jobs(config, actions):
            poses = turning_clip(frames, seed=studio.stable_seed(job))
            for tup in studio.clip_tuples(job, poses, config):
                writer.write(studio.encode_tuple(*tup))
        return writer.close()
