"""The agreeing P-GT folder: the teacher's P-GT shards without the tuples whose views
disagree most, for the L1-agree arm (docs/design.md, "rejection by the views' agreement").

The P-GT stage can leave out every tuple whose reprojection residual exceeds a threshold in
pixels (`pgt.max_residual_px`), but which threshold keeps what share depends on the teacher
and the data. This keeps a share instead: the teacher reads every P-GT tuple again with the
labelling options the P-GT was made with, and the `keep` share of tuples with the lowest
residual is copied, labels unchanged. A fine-tuning on it differs from L1-only in which
unlabeled tuples it reads, nothing else.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from pose3d.data.loader import make_eval_loader
from pose3d.data.shards import load_manifest, resolve_shards
from pose3d.models import load_model
from pose3d.models.multi_view import read_batch
from pose3d.train.pgt_copy import made_from, pgt_source, rewrite_pgt

LABELLING = ("checkpoint", "flip_test", "reject_px", "sharpen")  # the P-GT record's, kept


@torch.no_grad()
def residuals_by_key(pgt_root: str | os.PathLike, *, batch_size: int = 8,
                     device: str = "cpu") -> dict[str, float]:
    """{sample key: reprojection residual (input px)} of every tuple of a P-GT folder, read
    by the teacher and with the options its manifest's `pgt` record names."""
    record = load_manifest(pgt_root)["pgt"]
    model = load_model(record["checkpoint"], device, kind="multi_view").model
    loader = make_eval_loader(resolve_shards(str(pgt_root)), batch_size, rank=0, world_size=1,
                              keep_raw=True)
    found = {}
    for batch in loader:
        _, residual = read_batch(model, batch, device, flip_test=record.get("flip_test", False),
                                 reject_px=record.get("reject_px", 0.0),
                                 sharpen=record.get("sharpen", 1.0))
        found.update((raw["__key__"], res) for raw, res in zip(batch["raw"], residual))
    return found


def write_agreeing_pgt(pgt_root: str | os.PathLike, out: str | os.PathLike,
                       data_root: str | os.PathLike, keep: float = 0.7, *,
                       batch_size: int = 8, device: str = "cpu",
                       samples_per_shard: int = 1000) -> dict:
    """Copy to `out` the `keep` share (0 < keep <= 1) of the P-GT folder's tuples whose
    views agree best (lowest residual; ties kept together). `out` as for the Oracle's folder
    (check_pgt_root), swapped in when complete. Returns the manifest's `pgt` record:
    {"source": "agreeing", the teacher and its options (LABELLING), "keep", "max_residual_px",
    "from", "from_sha256", "tuples", "labeled", "dropped"}. Reads no withheld truth."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    source = pgt_source(pgt_root, out, data_root)  # before the teacher's pass
    residual = residuals_by_key(pgt_root, batch_size=batch_size, device=device)
    limit = float(np.quantile(list(residual.values()), keep, method="inverted_cdf"))
    record = {"source": "agreeing", **{k: source["pgt"].get(k) for k in LABELLING},
              "keep": keep, "max_residual_px": limit}
    return rewrite_pgt(pgt_root, out, data_root,
                       lambda raw: raw if residual.get(raw["__key__"], np.inf) <= limit
                       else None, record, samples_per_shard)


def is_current(agreeing_root: str | os.PathLike, pgt_root: str | os.PathLike,
               keep: float) -> bool:
    """Whether `agreeing_root` holds the `keep` share of the P-GT folder as it is now."""
    return made_from(agreeing_root, pgt_root, "agreeing").get("keep") == keep
