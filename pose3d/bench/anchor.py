"""The anchor of `pose3d bench train --anchor`: a plain torchvision ResNet-50 classifier's
training step, as a well-tuned recipe runs it (NVIDIA's ResNet-50 v1.5 for PyTorch: SGD
with momentum, bf16 autocast, channels_last, a fused optimiser step), on random images
already on the device, so that no loader limits it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

from pose3d.bench.flops import train_flops_per_image
from pose3d.bench.timing import measure
from pose3d.device import bf16_autocast
from pose3d.train.optimizer import optimizer_options


def time_anchor(batch: int, size: int, device: torch.device, steps: int, warmup: int,
                amp: bool = True, channels_last: bool = True, fused: bool = True) -> dict:
    """images/s and training GFLOP per image of ResNet-50 at batch x 3 x size x size.
    bf16 autocast and channels_last apply on CUDA only (the CPU runs float32, contiguous)."""
    gpu = device.type == "cuda"
    layout = torch.channels_last if channels_last and gpu else torch.contiguous_format
    model = torchvision.models.resnet50().to(device, memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                **optimizer_options(fused, device))
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=layout)
    labels = torch.randint(0, 1000, (batch,), device=device)
    autocast = bf16_autocast(device, on_gpu=amp)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    timing = measure(step, device, warmup=warmup, repeats=steps, max_seconds=60)
    with autocast:
        flops = train_flops_per_image(lambda: model(images), batch)
    return {"images_per_step": batch, "model_only": batch / timing.median_s,
            "flops_per_image": flops, "bf16": gpu and amp, "channels_last": layout is not
            torch.contiguous_format}
