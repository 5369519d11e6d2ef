"""Run a single-view checkpoint over eval shards: one world-mm prediction per (tuple, view).

Each view's heatmap-space prediction goes back to world millimetres through Π with the
root depth of the ground truth (a single view does not observe absolute depth); metrics
are root-aligned, so that choice moves nothing but the pose's placement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pose3d.data.loader import make_eval_loader
from pose3d.data.schema import to_uint8
from pose3d.data.shards import resolve_shards
from pose3d.eval.predictions import Predictions
from pose3d.geometry import project
from pose3d.losses import prediction_to_world
from pose3d.models import load_model
from pose3d.threads import ThreadGovernor


def load_single_view(path: str | Path, device: torch.device | str = "cpu"
                     ) -> tuple[torch.nn.Module, DictConfig]:
    """The single-view model of a pose3d checkpoint (sv_pretrain or finetune), in eval mode,
    and the config it was trained with. Another model's checkpoint is a CheckpointError."""
    saved = load_model(path, device, kind="single_view")
    return saved.model, OmegaConf.create(saved.config)


@torch.no_grad()
def predict(model: torch.nn.Module, shards: str | list[str], image_size: int,
            batch_size: int = 8, device: torch.device | str = "cpu", num_workers: int = 0,
            keep_images: int = 0, progress: bool = True
            ) -> tuple[Predictions, list[dict], dict]:
    """Predictions for every valid view of every eval tuple with GT, the first
    `keep_images` (image, pred2d) pairs for figures, and what the reader skipped:
    {"counts": {reason: n}, "examples": [the first few, naming shard and key]}. Needs shards
    with joints3d of `image_size` px (others are skipped)."""
    device = torch.device(device)
    space = model.heatmap_space(image_size)
    urls = resolve_shards(shards)
    loader = make_eval_loader(urls, batch_size, num_workers=num_workers, rank=0, world_size=1,
                              normalize=True, image_size=image_size)
    out: dict[str, list] = {k: [] for k in ("pred", "gt", "camera", "action", "subject", "key",
                                            "rotation")}
    kept: list[dict] = []
    governor = ThreadGovernor.for_run(None, device)  # fixed where the user fixed it
    for batch in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
        governor.step()
        b, v = batch["valid"].shape
        images = batch["images"].to(device).flatten(0, 1)
        coords = model(images)["coords"].float().view(b, v, -1, 3).cpu()
        K, R, t, valid = batch["K"], batch["R"], batch["t"], batch["valid"]
        gt = batch["joints3d"]
        world, _ = prediction_to_world(coords, gt, K, R, t, space, valid)
        pred2d = project(world, K, R, t)
        for i in range(b):
            if not batch["has_joints3d"][i]:
                continue
            for c in range(v):
                if not valid[i, c]:
                    continue
                out["pred"].append(world[i, c].numpy())
                out["gt"].append(gt[i].numpy())
                out["rotation"].append(R[i, c].numpy())
                out["camera"].append(f"cam{c + 1}")  # views keep the rig order
                out["action"].append(batch["action"][i])
                out["subject"].append(batch["subject"][i])
                out["key"].append(f"{batch['key'][i]}/{c}")
                if len(kept) < keep_images:
                    kept.append({"key": out["key"][-1], "pred2d": pred2d[i, c].numpy(),
                                 "image": to_uint8(batch["images"][i, c])})
    skipped = {"counts": dict(loader.skipped), "examples": list(loader.skip_examples)}
    if not out["pred"]:
        raise ValueError(f"no usable eval tuple with ground truth in {shards} (skipped: "
                         f"{skipped['counts'] or 'none'})")
    preds = Predictions(np.stack(out["pred"]), np.stack(out["gt"]), out["camera"],
                        out["action"], out["subject"], out["key"],
                        rotation=np.stack(out["rotation"]))
    return preds, kept, skipped
