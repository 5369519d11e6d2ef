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

import os

import numpy as np

from pose3d.data import schema
from pose3d.train.pgt import withheld_gt
from pose3d.train.pgt_copy import made_from, pgt_digest, rewrite_pgt

__all__ = ["is_current", "pgt_digest", "write_oracle_pgt"]


def write_oracle_pgt(pgt_root: str | os.PathLike, out: str | os.PathLike,
                     data_root: str | os.PathLike, samples_per_shard: int = 1000) -> dict:
    """Copy the P-GT folder `pgt_root` to `out` with every tuple's P-GT replaced by its
    withheld truth [17, 3] world mm. `out` must be absent or an earlier P-GT folder and apart
    from `data_root` (check_pgt_root); it is swapped in when complete. Returns the manifest's
    `pgt` record: {"source": "oracle", "from", "from_sha256" (pgt_digest of the source),
    "tuples", "labeled", "dropped"}."""

    def truth_label(raw: dict) -> dict | None:
        truth = withheld_gt(raw)
        if truth is None or not np.isfinite(truth).all():
            return None
        return schema.with_pgt(raw, truth)

    return rewrite_pgt(pgt_root, out, data_root, truth_label, {"source": "oracle"},
                       samples_per_shard)


def is_current(oracle_root: str | os.PathLike, pgt_root: str | os.PathLike) -> bool:
    """Whether `oracle_root` holds the Oracle labels of the P-GT folder as it is now."""
    return bool(made_from(oracle_root, pgt_root, "oracle"))
