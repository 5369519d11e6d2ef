"""JPEG decoding on the trainer's device: the other half of a loader with decode_on_device.

The loader's workers then only read and batch the JPEG bytes, and one call of
torchvision.io.decode_jpeg decodes the whole batch where the model runs (nvJPEG on a GPU,
libjpeg on a CPU), so a step faster than the workers can decode is not kept waiting.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg

from pose3d.data.schema import normalize_images


def _decode_each(data: list[Tensor], device: torch.device) -> list[Tensor | None]:
    """The images of `data` [3, S, S] uint8 on `device`: one batched call, or, when that
    fails (a JPEG the header check let through), one call each with None for a bad one."""
    with warnings.catch_warnings():
        # torchvision 0.29 marks its image codecs deprecated (for TorchCodec) on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_each_quietly(data, device)


def _decode_each_quietly(data: list[Tensor], device: torch.device) -> list[Tensor | None]:
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        out: list[Tensor | None] = []
        for d in data:
            try:
                out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(None)
        return out


def decode_batch(batch: dict, device: torch.device) -> dict:
    """A loader batch with `jpegs` and `image_size` (pose3d.data.loader, decode_on_device)
    -> the batch with `images` [B, V, 3, S, S] float32 ImageNet-normalised on `device`,
    zeros where a view is not valid. A view whose JPEG does not decode to S x S becomes
    invalid (`valid` False there) with a warning."""
    jpegs, size = batch["jpegs"], int(batch["image_size"])
    out = {k: v for k, v in batch.items() if k not in ("jpegs", "image_size")}
    B, V = len(jpegs), len(jpegs[0])
    where = [(b, v) for b in range(B) for v in range(V) if jpegs[b][v] is not None]
    decoded = _decode_each([jpegs[b][v] for b, v in where], device) if where else []
    good = [(bv, img) for bv, img in zip(where, decoded)
            if img is not None and img.shape == (3, size, size)]
    images = torch.zeros(B, V, 3, size, size, dtype=torch.uint8, device=device)
    if good:
        index = torch.tensor([bv for bv, _ in good], device=device)
        images[index[:, 0], index[:, 1]] = torch.stack([img for _, img in good])
    bad = sorted(set(where) - {bv for bv, _ in good})
    if bad:
        keys = batch.get("key", [])
        names = [f"{keys[b] if b < len(keys) else b} view {v}" for b, v in bad]
        warnings.warn(f"JPEGs that did not decode to {size} x {size} px: view made invalid: "
                      f"{', '.join(names[:5])}", stacklevel=2)
        valid = out["valid"].clone()
        for b, v in bad:
            valid[b, v] = False
        out["valid"] = valid
    out["images"] = normalize_images(images)
    return out
