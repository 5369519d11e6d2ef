"""A tiny synthetic dataset for the trainer's tests: labeled S1, unlabeled S7 (GT kept only
as the withheld file the P-GT stage scores against) and eval S9, 64 px, 4 H36M cameras."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from studio_helpers import turning_clip

from pose3d.data import schema, studio
from pose3d.data.shards import ShardSetWriter, shards_for_role
from pose3d.train.pgt import WITHHELD_FILE, withheld_gt

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


def raw_samples(folder: Path, role: str) -> list[dict]:
    """The role's samples as the tars hold them (file extension -> bytes)."""
    samples: dict[str, dict] = {}
    for shard in shards_for_role(folder, role):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, name = member.name.partition(".")
                samples.setdefault(key, {"__key__": key})[name] = \
                    tar.extractfile(member).read()
    return list(samples.values())


def write_pgt_folder(data: Path, out: Path, roles: tuple[str, ...] = ("unlabeled",),
                     offset_mm: float = 0.0, checkpoint: str = "written by a test") -> Path:
    """A folder as the P-GT stage writes it (a manifest with its pgt record): the tuples of
    `roles` of `data`, every file kept, each labeled with its true 3D moved by offset_mm.
    Roles other than 'unlabeled' make a forged one. `checkpoint`: the teacher it names."""
    with ShardSetWriter(out, 4) as writer:
        for role in roles:
            for raw in raw_samples(data, role):
                writer.write(schema.with_pgt(raw, withheld_gt(raw) + offset_mm))
        writer.close(pgt={"checkpoint": checkpoint, "offset_mm": offset_mm})
    return out


def forge_meta(shard: str | Path, changes: list[dict]) -> list[str]:
    """Rewrite a shard with the meta.json of its i-th sample (in key order) updated by
    changes[i]; returns the keys changed."""
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    keys = sorted({name.split(".")[0] for name, _ in members})[:len(changes)]
    forged = dict(zip(keys, changes))
    with tarfile.open(shard, "w") as tar:
        for name, payload in members:
            key, ext = name.split(".", 1)
            if key in forged and ext == schema.META_FILE:
                payload = json.dumps({**json.loads(payload), **forged[key]}).encode()
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return keys


TINY_MV = {"kind": "multi_view", "backbone": "resnet10", "deconv_channels": 8, "num_deconv": 1}


def save_untrained_model(path: Path, arch: dict = TINY_MV) -> Path:
    """A pose3d checkpoint of the model `arch` with seeded random weights."""
    import torch

    from pose3d.models import build_model
    from pose3d.models.saved import fingerprint

    torch.manual_seed(0)
    model = build_model(arch)
    torch.save({"model": model.state_dict(), "fingerprint": fingerprint(model, arch)}, path)
    return path
