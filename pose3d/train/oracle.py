"""The Oracle's P-GT folder: the teacher's P-GT shards with each tuple's label replaced by
its withheld true 3D (docs/design.md, "the Oracle arm").

A fine-tuning on this folder differs from L1-only in one thing only, the labels of the
unlabeled tuples: the same tuples (those the teacher labeled), the same shard sizes, so the
same mixing and order for a seed. Its gain over GT-only is what the unlabeled people could
teach with perfect labels, the upper bound of what the teacher's P-GT can deliver. This is
the one place in training that reads `withheld_joints3d.npy`; a tuple without a finite
truth is left out (and counted).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from pose3d.data import schema
from pose3d.data.loader import iterate_raw_samples
from pose3d.data.shards import ShardSetWriter, load_manifest, resolve_shards
from pose3d.data.staging import staged_dataset
from pose3d.train.checkpoint import digest
from pose3d.train.pgt import check_pgt_root, withheld_gt


def write_oracle_pgt(pgt_root: str | os.PathLike, out: str | os.PathLike,
                     data_root: str | os.PathLike, samples_per_shard: int = 1000) -> dict:
    """Copy the P-GT folder `pgt_root` to `out` with every tuple's P-GT replaced by its
    withheld truth [17, 3] world mm. `out` must be absent or an earlier P-GT folder and apart
    from `data_root` (check_pgt_root); it is swapped in when complete. Returns the manifest's
    `pgt` record: {"source": "oracle", "from", "from_sha256" (pgt_digest of the source),
    "tuples", "labeled", "dropped"}."""
    source = load_manifest(pgt_root)
    if "pgt" not in source:
        raise ValueError(f"{pgt_root} is not a P-GT folder (its manifest has no pgt record)")
    check_pgt_root(out, data_root)
    source_digest = pgt_digest(pgt_root)
    counts = {"tuples": 0, "labeled": 0}
    with staged_dataset(out, overwrite=True) as tmp:
        with ShardSetWriter(tmp, samples_per_shard) as writer:
            for raw in iterate_raw_samples(resolve_shards(str(pgt_root))):
                counts["tuples"] += 1
                truth = withheld_gt(raw)
                if truth is None or not np.isfinite(truth).all():
                    continue
                writer.write(schema.with_pgt(raw, truth))
                counts["labeled"] += 1
            record = {"source": "oracle", "from": str(Path(pgt_root)),
                      "from_sha256": source_digest, **counts,
                      "dropped": counts["tuples"] - counts["labeled"]}
            extra = {k: v for k, v in source.items()
                     if k not in ("schema", "image_size", "joint_names", "roles", "pgt")}
            writer.close(**extra, pgt=record)
    return record


def pgt_digest(pgt_root: str | os.PathLike) -> str:
    """SHA-256 (hex) over the names and bytes of a P-GT folder's manifest and shards: which
    labels it holds, whatever the files' mtimes (a copy keeps its old mtime)."""
    root = Path(pgt_root)
    sha = hashlib.sha256()
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        sha.update(f"{path.name}\0{digest(path)}\n".encode())
    return sha.hexdigest()


def is_current(oracle_root: str | os.PathLike, pgt_root: str | os.PathLike) -> bool:
    """Whether `oracle_root` holds the Oracle labels of the P-GT folder as it is now."""
    try:
        record = load_manifest(oracle_root).get("pgt") or {}
    except (OSError, ValueError):
        return False
    return record.get("source") == "oracle" and record.get("from_sha256") == pgt_digest(pgt_root)
