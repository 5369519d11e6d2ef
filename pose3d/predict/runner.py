"""The model side of prediction: a checkpoint (or a model already in memory) made ready to
run, and crops put through it in batches (ImageNet-normalised on the device, bf16 autocast
on a GPU)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pose3d.data.schema import normalize_images
from pose3d.device import bf16_autocast, resolve_device
from pose3d.models import SavedModel, load_model
from pose3d.models.saved import CheckpointError, unwrap


@dataclass
class Predictor:
    """A model in eval mode on `device`, the square input size it was trained on, and the
    seconds spent in it so far."""

    model: nn.Module
    image_size: int
    device: torch.device
    kind: str
    model_s: float = 0.0

    def autocast(self):
        return bf16_autocast(self.device)

    def to_input(self, crops: np.ndarray) -> torch.Tensor:
        """uint8 RGB crops [N, S, S, 3] -> normalised float32 [N, 3, S, S] on the device."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device, non_blocking=True)
        return normalize_images(x.permute(0, 3, 1, 2))

    def timed(self):
        return _Stopwatch(self)


class _Stopwatch:
    def __init__(self, predictor: Predictor) -> None:
        self.p = predictor

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        if self.p.device.type == "cuda":
            torch.cuda.synchronize(self.p.device)
        self.p.model_s += time.perf_counter() - self.start


def make_predictor(model_or_path: str | Path | SavedModel | nn.Module | Predictor, kind: str,
                   device: str | torch.device | None = None,
                   image_size: int | None = None) -> Predictor:
    """A Predictor from a checkpoint path, a SavedModel or a bare model of `kind`
    ("single_view" | "multi_view"). The input size comes from the checkpoint's training
    config (`data.image_size`) unless `image_size` is given (a bare model needs it).
    A checkpoint of the other kind is a CheckpointError naming what it holds."""
    if isinstance(model_or_path, Predictor):
        return model_or_path
    device = resolve_device(device)
    config: dict = {}
    if isinstance(model_or_path, (str, Path)):
        model_or_path = load_model(model_or_path, device, kind=kind)
    if isinstance(model_or_path, SavedModel):
        if model_or_path.kind != kind:
            raise CheckpointError(f"the model is a {model_or_path.kind} model, not a {kind} "
                                  f"model")
        config, model = model_or_path.config, model_or_path.model
    else:
        model = model_or_path
    expected = {"single_view": "SingleViewModel", "multi_view": "MultiViewTriangulationModel"}
    if type(unwrap(model)).__name__ != expected[kind]:
        raise CheckpointError(f"{type(unwrap(model)).__name__} is not a {kind} model")
    size = image_size or (config.get("data") or {}).get("image_size")
    if not size:
        raise ValueError("the input image size is unknown: the checkpoint has no "
                         "data.image_size in its config; pass image_size")
    return Predictor(model.to(device).eval(), int(size), device, kind)


def timing(start: float, decode_s: float, predictor: Predictor, frames: int) -> dict:
    """Frames per second and where the time went (decoding overlaps the model)."""
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": wall, "fps": frames / wall if wall > 0 else 0.0,
            "decode_s": decode_s, "model_s": predictor.model_s,
            "decode_share": decode_s / wall if wall > 0 else 0.0,
            "model_share": predictor.model_s / wall if wall > 0 else 0.0}


def in_batches(items: Iterable[dict], batch_size: int, run: Callable[[list[dict]], dict],
               total: int | None = None, progress: bool = True, desc: str = "predict"
               ) -> Iterator[tuple[list[dict], dict[str, np.ndarray]]]:
    """Group `items` into batches of `batch_size` (the last may be smaller), yield each with
    `run(batch)`, and count the frames on a tqdm bar."""
    bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)
    it = iter(items)
    try:
        while batch := list(itertools.islice(it, batch_size)):
            yield batch, run(batch)
            bar.update(len(batch))
    finally:
        bar.close()
