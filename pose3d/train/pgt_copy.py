"""A P-GT folder made from another: the same tuples' files, each kept, relabeled or left
out by a rule (the Oracle's truth, L1-agree's share), swapped in when complete."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from pose3d.data.loader import iterate_raw_samples
from pose3d.data.shards import ShardSetWriter, load_manifest, resolve_shards
from pose3d.data.staging import staged_dataset
from pose3d.train.checkpoint import digest
from pose3d.train.pgt import check_pgt_root


def pgt_source(pgt_root: str | os.PathLike, out: str | os.PathLike,
               data_root: str | os.PathLike) -> dict:
    """The manifest of the P-GT folder `pgt_root`, once `out` is known to be a place a
    P-GT folder may be written (check_pgt_root); ValueError when it is not a P-GT folder."""
    source = load_manifest(pgt_root)
    if "pgt" not in source:
        raise ValueError(f"{pgt_root} is not a P-GT folder (its manifest has no pgt record)")
    check_pgt_root(out, data_root)
    return source


def rewrite_pgt(pgt_root: str | os.PathLike, out: str | os.PathLike,
                data_root: str | os.PathLike, sample: Callable[[dict], dict | None],
                record: dict, samples_per_shard: int = 1000) -> dict:
    """Write to `out` what `sample(raw)` returns for each raw sample of `pgt_root` (None:
    left out). Returns the new manifest's `pgt` record: `record` with "from", "from_sha256"
    (pgt_digest of the source), "tuples", "labeled" (written) and "dropped"."""
    source = pgt_source(pgt_root, out, data_root)
    source_digest = pgt_digest(pgt_root)
    counts = {"tuples": 0, "labeled": 0}
    with staged_dataset(out, overwrite=True) as tmp:
        with ShardSetWriter(tmp, samples_per_shard) as writer:
            for raw in iterate_raw_samples(resolve_shards(str(pgt_root))):
                counts["tuples"] += 1
                kept = sample(raw)
                if kept is not None:
                    writer.write(kept)
                    counts["labeled"] += 1
            record = {**record, "from": str(Path(pgt_root)), "from_sha256": source_digest,
                      **counts, "dropped": counts["tuples"] - counts["labeled"]}
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


def made_from(folder: str | os.PathLike, pgt_root: str | os.PathLike, source: str) -> dict:
    """The `pgt` record of `folder` when a `source` rule made it from the P-GT folder as it
    is now; {} otherwise (absent, unreadable, another rule, or the P-GT changed since)."""
    try:
        record = load_manifest(folder).get("pgt") or {}
    except (OSError, ValueError):
        return {}
    current = record.get("source") == source and record.get("from_sha256") == pgt_digest(
        pgt_root)
    return record if current else {}
