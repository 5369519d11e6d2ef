"""Shard sets on disk: writing tar shards per role with a manifest, and finding them again.

A dataset folder holds `ROLE-NNNNNN.tar` shards (WebDataset tars of pose3d.data.schema
samples) and `manifest.json`:

    {"schema": 1, "image_size": 128, "joint_names": [...17...],
     "roles": {"labeled": {"subjects": ["S1", ...], "samples": 1200,
                           "shards": [{"file": "labeled-000000.tar", "samples": 100}, ...]},
               "unlabeled": {...}, "eval": {...}},
     "cameras": {"S1": [Camera.to_dict(), ...]},   # full-frame rig per subject
     ... anything the writer adds (dataset, config)}
"""

from __future__ import annotations

import glob
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

import braceexpand
import webdataset as wds

from pose3d.data import schema
from pose3d.json_input import load_json
from pose3d.skeleton import JOINT_NAMES

MANIFEST = "manifest.json"


class ShardSetWriter:
    """Writes samples (schema.encode_sample dicts) into per-role shards of at most
    `samples_per_shard` samples, then the manifest on close().

    shuffle_buffer > 0 holds that many samples per role and writes a random one each time
    (seeded), so that a shard mixes clips instead of holding consecutive frames of one.
    """

    def __init__(self, out_dir: str | os.PathLike, samples_per_shard: int = 1000, *,
                 shuffle_buffer: int = 0, seed: int = 0) -> None:
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard = samples_per_shard
        self.shuffle_buffer = shuffle_buffer
        self._rng = random.Random(seed)
        self._writers: dict[str, wds.ShardWriter] = {}
        self._buffers: dict[str, list[dict]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._subjects: dict[str, set[str]] = {}
        self.image_size: int | None = None
        self._closed = False
        self._mtime = int(time.time())

    def write(self, sample: dict) -> None:
        meta = json.loads(sample[schema.META_FILE])
        role = schema.check_name("role", meta["role"])  # a shard's file name: no path
        schema.check_name("subject", meta["subject"])
        if self.image_size is None:
            self.image_size = meta["image_size"]
        elif meta["image_size"] != self.image_size:
            raise ValueError(f"{sample['__key__']}: image size {meta['image_size']} differs "
                             f"from the set's {self.image_size}")
        self._subjects.setdefault(role, set()).add(meta["subject"])
        if self.shuffle_buffer <= 0:
            self._emit(role, sample)
            return
        buf = self._buffers.setdefault(role, [])
        buf.append(sample)
        if len(buf) >= self.shuffle_buffer:
            self._emit(role, buf.pop(self._rng.randrange(len(buf))))

    def _emit(self, role: str, sample: dict) -> None:
        if role not in self._writers:
            pattern = str(self.out_dir / f"{role}-%06d.tar")
            # A whole-second mtime keeps tarfile from adding a PAX header to every member
            # (a float mtime needs one), which halves the header parsing when reading.
            self._writers[role] = wds.ShardWriter(pattern, maxcount=self.samples_per_shard,
                                                  verbose=0, mtime=self._mtime)
            self._counts[role] = {}
        writer = self._writers[role]
        writer.write(sample)
        name = os.path.basename(writer.fname)
        self._counts[role][name] = self._counts[role].get(name, 0) + 1

    def close(self, **extra) -> dict:
        """Flush, close every shard, write manifest.json (with `extra` keys); returns it."""
        self._closed = True
        for role, buf in self._buffers.items():
            self._rng.shuffle(buf)
            for sample in buf:
                self._emit(role, sample)
        self._buffers.clear()
        for writer in self._writers.values():
            writer.close()
        roles = {role: {"subjects": sorted(self._subjects[role]),
                        "samples": sum(counts.values()),
                        "shards": [{"file": f, "samples": n} for f, n in counts.items()]}
                 for role, counts in self._counts.items()}
        manifest = {"schema": schema.SCHEMA_VERSION, "image_size": self.image_size,
                    "joint_names": list(JOINT_NAMES), "roles": roles, **extra}
        write_manifest(self.out_dir, manifest)
        return manifest

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.close()
            return
        self._closed = True
        for writer in self._writers.values():  # leave the tars readable, no manifest
            writer.close()


def write_manifest(folder: str | os.PathLike, manifest: dict) -> None:
    """Write manifest.json atomically (a reader never sees half a file)."""
    path = Path(folder) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)


def load_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a dataset folder; FileNotFoundError naming the folder if absent,
    ValueError naming the manifest when it is not JSON or a shard entry is not a file name
    inside the folder (every reader of shard paths goes through here)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {folder} (not a pose3d dataset folder; "
                                f"write one with `pose3d synth --out {folder}`)")
    manifest = load_json(path.read_bytes(), f"{path}: not a pose3d manifest")
    try:
        roles = manifest["roles"]
        entries = [(role, shard["file"]) for role, entry in roles.items()
                   for shard in entry["shards"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a pose3d manifest ({type(exc).__name__}: {exc})") \
            from None
    for role, name in entries:
        if not _inside(folder, name):
            raise ValueError(f"{path}: shard {name!r} of role {role!r} is not a path inside "
                             f"the dataset folder (no absolute paths, no '..', no link "
                             f"leading outside); refused")
    return manifest


def _inside(folder: str | os.PathLike, name: object) -> bool:
    """Whether a manifest's shard entry names a file below its folder: a relative path
    without '..' (the writers store bare file names) that still lies inside once symbolic
    links are resolved (a link in the folder may lead anywhere)."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or parts == ():
        return False
    root = Path(folder).resolve()
    return root in (root / name).resolve().parents


def shards_for_role(folder: str | os.PathLike, role: str) -> list[str]:
    """Paths of the shards of `role` in a dataset folder, in manifest order."""
    manifest = load_manifest(folder)
    if role not in manifest["roles"]:
        raise FileNotFoundError(f"{folder} has no {role!r} shards; roles there: "
                                f"{', '.join(manifest['roles']) or 'none'}")
    return [str(Path(folder) / s["file"]) for s in manifest["roles"][role]["shards"]]


def _expand_one(spec: str) -> list[str]:
    if os.path.isdir(spec):
        if os.path.isfile(os.path.join(spec, MANIFEST)):
            manifest = load_manifest(spec)
            return [p for role in manifest["roles"] for p in shards_for_role(spec, role)]
        return sorted(glob.glob(os.path.join(spec, "*.tar")))
    paths: list[str] = []
    for pattern in braceexpand.braceexpand(spec):
        if glob.has_magic(pattern):
            paths.extend(sorted(glob.glob(pattern)))
        else:
            paths.append(pattern)  # checked (and reported if missing) by the caller
    return paths


def resolve_shards(spec: str | os.PathLike | Sequence[str | os.PathLike],
                   role: str | None = None) -> list[str]:
    """Shard paths from a dataset folder (every shard in its manifest, or only `role`'s), a
    brace / glob pattern (`data/labeled-{000000..000009}.tar`, `data/*.tar`), or a list of
    those. Raises FileNotFoundError naming the spec when nothing matches."""
    if isinstance(spec, (str, os.PathLike)):
        spec = os.fspath(spec)
        if role is not None:
            if not os.path.isdir(spec):
                raise ValueError(f"role={role!r} needs a dataset folder, got {spec!r}")
            paths = shards_for_role(spec, role)
        else:
            paths = _expand_one(spec)
    else:
        paths = [p for item in spec for p in resolve_shards(item, role)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"no such shard file (or folder): {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''}")
    if not paths:
        raise FileNotFoundError(f"no shards match {spec!r} (give a dataset folder with "
                                f"{MANIFEST}, a .tar path, or a brace/glob pattern)")
    return paths
