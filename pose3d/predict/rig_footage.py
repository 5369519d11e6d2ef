"""A calibrated rig's synchronised inputs (one video or image folder per camera) through a
multi-view predictor: frames decoded and cropped in a background thread, batches through
F_mv, overlays per view written as they come, then the world joints as JSON and NPZ and a
3D figure."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from pose3d.geometry import Camera
from pose3d.predict import outputs
from pose3d.predict.inputs import PredictWarning, Source, prefetch
from pose3d.predict.multi_view import prepared_views, run_batches
from pose3d.predict.runner import Predictor, timing
from pose3d.predict.single_view import concat


def predict_rig_sources(predictor: Predictor, sources: list[Source], cameras: list[Camera],
                        out_dir: str | Path, *, boxes=None, batch_size: int = 8,
                        progress: bool = True, meta: dict | None = None) -> dict:
    """Predict every synchronised frame (up to the shortest input) and write out_dir/:
    predictions.json / .npz (world joints per frame, 2D per view), per camera
    <name>/overlay.mp4 (videos) or <name>/overlay/<frame>.png, pose3d.png and timing.json."""
    with outputs.staged(out_dir) as dest:
        result = _predict_into(dest, predictor, sources, cameras, boxes, batch_size, progress,
                               meta)
        outputs.write_timing(dest, result["timing"])  # inside: the folder is swapped in whole
    return {**result, "out": Path(out_dir)}


def _predict_into(dest: Path, predictor: Predictor, sources: list[Source],
                  cameras: list[Camera], boxes, batch_size: int, progress: bool,
                  meta: dict | None) -> dict:
    start = time.perf_counter()
    predictor.model_s = 0.0
    frames = zip(*(src.frames() for src in sources))  # stops at the shortest input
    items = prefetch(prepared_views(frames, cameras, boxes, predictor.image_size,
                                    [str(s.path) for s in sources]))
    videos = [outputs.VideoOut(dest / cam.name / "overlay.mp4", src.fps)
              if src.kind == "video" else None for src, cam in zip(sources, cameras)]
    counts = [s.num_frames for s in sources if s.num_frames]
    parts, names, first = [], [], None
    try:
        for batch, out in run_batches(predictor, items, cameras, batch_size,
                                      min(counts) if counts else None, progress):
            for i, item in enumerate(batch):
                for v, (cam, video) in enumerate(zip(cameras, videos)):
                    picture = outputs.overlay(item["images"][v], out["joints2d"][i, v],
                                              item["box"][v])
                    if video is not None:
                        video.write(picture)
                    else:
                        stem = Path(item["name"]).stem
                        outputs.write_image(dest / cam.name / "overlay" / f"{stem}.png",
                                            picture)
            if first is None:
                first = (batch[0]["images"][0], out["joints2d"][0, 0], out["joints3d"][0],
                         batch[0]["box"][0])
            parts.append(out)
            names += [item["name"] for item in batch]
    finally:
        for video in videos:
            if video is not None:
                video.close()
    if not names:
        raise ValueError("no synchronised frame in the inputs")
    arrays = concat(parts)
    failed = int((~arrays["valid3d"].astype(bool)).any(axis=1).sum())
    if failed:
        warnings.warn(f"{failed} of {len(names)} frames have joints that could not be "
                      f"triangulated (valid3d false, joints3d_world 0 in {dest.name}): "
                      f"check the cameras and the boxes", PredictWarning, stacklevel=2)
    meta = {**(meta or {}), "inputs": [str(s.path) for s in sources],
            "camera_names": [c.name for c in cameras]}
    renamed = {"joints3d_world": arrays["joints3d"], "valid3d": arrays["valid3d"],
               "joints2d": arrays["joints2d"], "confidences": arrays["confidences"],
               "box": arrays["box"]}
    outputs.write_npz(dest / "predictions.npz", renamed, names)
    outputs.write_json(dest / "predictions.json", renamed, names, meta)
    image, joints2d, joints3d, box = first
    outputs.figure_3d(dest / "pose3d.png", image, joints2d, joints3d, world=True, box=box,
                      title=f"{cameras[0].name}: frame {names[0]} (world mm)")
    decode_s = sum(s.decode_s for s in sources)
    return {"out": dest, "frames": len(names),
            "timing": timing(start, decode_s, predictor, len(names))}
