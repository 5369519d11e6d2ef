"""A tiny synthetic dataset for the trainer's tests: labeled S1, unlabeled S7 (GT kept only
as the withheld file the P-GT stage scores against) and eval S9, 64 px, 4 H36M cameras."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from studio_helpers import turning_clip

from pose3d.data import studio
from pose3d.data.shards import ShardSetWriter
from pose3d.train.pgt import WITHHELD_FILE

ROLES = {"labeled": ("S1",), "unlabeled": ("S7",), "eval": ("S9",)}


def write_tiny_dataset(out: Path, frames: int = 6, image_size: int = 64,
                       samples_per_shard: int = 3) -> dict:
    config = studio.StudioConfig(roles=ROLES, clips_per_action=1, frames_per_clip=frames,
                                 frame_step=1, image_size=image_size, cameras="h36m")
    with ShardSetWriter(out, samples_per_shard) as writer:
        for job in studio.plan_jobs(config, ("turning",)):
            poses = turning_clip(frames, seed=studio.stable_seed(job))
            for meta, images, cameras, joints in studio.clip_tuples(job, poses, config):
                sample = studio.encode_tuple(meta, images, cameras, joints)
                if meta["role"] == "unlabeled":
                    buf = io.BytesIO()
                    np.save(buf, np.asarray(joints, np.float32))
                    sample[WITHHELD_FILE] = buf.getvalue()
                writer.write(sample)
        return writer.close(dataset="synthetic-test")
