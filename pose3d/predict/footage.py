"""One input (video, folder or image) through a single-view predictor, start to finish:
frames decoded and cropped in a background thread, batches through the model, overlays
written as they come (so a long video is never held in memory), then JSON, NPZ and the 3D
figure."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pose3d.predict import outputs
from pose3d.predict.inputs import Source, prefetch
from pose3d.predict.runner import Predictor, timing
from pose3d.predict.single_view import concat, prepared_frames, run_batches

SAVED = ("joints2d", "joints3d_rel", "joints3d_cam", "root_depth", "box", "K", "coords")


def predict_source(predictor: Predictor, source: Source, out_dir: str | Path, *,
                   boxes=None, intrinsics: np.ndarray | None = None,
                   root_depth: float | None = None, batch_size: int = 16,
                   progress: bool = True, meta: dict | None = None) -> dict:
    """Predict every frame of `source` and write out_dir/<input name>/: predictions.json,
    predictions.npz, overlay/<frame>.png (images) or overlay.mp4 (video), pose3d.png and
    timing.json.
    Returns {"out": folder, "frames": N, "timing": {...}}."""
    final = Path(out_dir) / source.name
    with outputs.staged(final) as dest:
        result = _predict_into(dest, predictor, source, boxes, intrinsics, root_depth,
                               batch_size, progress, meta)
        outputs.write_timing(dest, result["timing"])  # inside: the folder is swapped in whole
    return {**result, "out": final}


def _predict_into(dest: Path, predictor: Predictor, source: Source, boxes,
                  intrinsics: np.ndarray | None, root_depth: float | None, batch_size: int,
                  progress: bool, meta: dict | None) -> dict:
    start = time.perf_counter()
    predictor.model_s = 0.0
    items = prefetch(prepared_frames(source.frames(), boxes, predictor.image_size,
                                     str(source.path)))
    video = outputs.VideoOut(dest / "overlay.mp4", source.fps) if source.kind == "video" \
        else None
    parts, names, first, write_s, crop_s = [], [], None, 0.0, 0.0
    try:
        for batch, out in run_batches(predictor, items, batch_size, intrinsics, root_depth,
                                      source.num_frames or None, progress, source.name):
            t0 = time.perf_counter()
            for i, item in enumerate(batch):
                picture = outputs.overlay(item["image"], out["joints2d"][i], item["box"])
                if video is not None:
                    video.write(picture)
                else:
                    outputs.write_image(dest / "overlay" / f"{Path(item['name']).stem}.png",
                                        picture)
            if first is None:
                first = (batch[0]["image"], out["joints2d"][0], out["joints3d_rel"][0],
                         batch[0]["box"])
            parts.append({k: v for k, v in out.items() if k in SAVED})
            names += [item["name"] for item in batch]
            crop_s += sum(item["crop_s"] for item in batch)
            write_s += time.perf_counter() - t0
    finally:
        if video is not None:
            video.close()
    t0 = time.perf_counter()
    arrays = concat(parts)
    meta = {**(meta or {}), "input": str(source.path), "kind": source.kind,
            "root_depth_from": "given" if root_depth is not None else "bone lengths",
            "intrinsics_from": "given" if intrinsics is not None else "assumed"}
    outputs.write_npz(dest / "predictions.npz", arrays, names)
    outputs.write_json(dest / "predictions.json", arrays, names, meta)
    image, joints2d, joints3d, box = first
    outputs.figure_3d(dest / "pose3d.png", image, joints2d, joints3d, box=box,
                      title=f"{source.name}: frame {names[0]} (camera mm, root-relative)")
    write_s += time.perf_counter() - t0
    stats = timing(start, source.decode_s, predictor, len(names))
    return {"out": dest, "frames": len(names),
            "timing": {**stats, "crop_s": crop_s, "write_s": write_s}}
