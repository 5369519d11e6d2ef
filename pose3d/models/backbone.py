"""ResNet trunks (torchvision ResNet-18/34/50 without global pooling and fc), stride 32.

Nothing is downloaded: ImageNet weights come from a local file (a torchvision state dict,
e.g. `resnet50-0676ba61.pth` copied onto the machine), passed as `weights_path`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models

RESNETS = {
    "resnet18": (models.resnet18, 512),
    "resnet34": (models.resnet34, 512),
    "resnet50": (models.resnet50, 2048),
}
TRUNK_STRIDE = 32


class ResNetTrunk(nn.Module):
    """Images [N, 3, H, W] -> features [N, C, H/32, W/32]. Parameter names are torchvision's
    (conv1, bn1, layer1..layer4), so torchvision state dicts load without renaming."""

    def __init__(self, name: str = "resnet50") -> None:
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(RESNETS)}")
        constructor, channels = RESNETS[name]
        net = constructor(weights=None)
        self.name = name
        self.out_channels = channels
        self.stride = TRUNK_STRIDE
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)

    def forward(self, images: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def build_backbone(name: str = "resnet50", weights_path: str | Path | None = None) -> ResNetTrunk:
    """A ResNet trunk, randomly initialised or loaded from a local state-dict file."""
    trunk = ResNetTrunk(name)
    if weights_path is not None:
        load_trunk_weights(trunk, weights_path)
    return trunk


def load_trunk_weights(trunk: ResNetTrunk, weights_path: str | Path) -> None:
    """Load a torchvision ResNet state dict (its fc.* entries are ignored) into `trunk`.

    Raises FileNotFoundError for a missing file and ValueError, in one line, when the file
    does not hold a state dict of this architecture.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    state = _state_dict_of(torch.load(path, map_location="cpu", weights_only=True), path)
    state = {k.removeprefix("module."): v for k, v in state.items()
             if not k.removeprefix("module.").startswith("fc.")}
    own = trunk.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        example = (f"{wrong[0]}: file {list(state[wrong[0]].shape)} vs model "
                   f"{list(own[wrong[0]].shape)}" if wrong else (missing or unexpected)[0])
        raise ValueError(
            f"weights file {path} does not fit a {trunk.name} trunk: {len(wrong)} tensors of "
            f"the wrong shape, {len(missing)} missing, {len(unexpected)} unexpected "
            f"(e.g. {example})")
    trunk.load_state_dict(state)


def _state_dict_of(obj: object, path: Path) -> Mapping[str, Tensor]:
    """The state dict in a loaded file: the object itself or its 'state_dict' / 'model'."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        if all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
            return obj
    raise ValueError(f"weights file {path} holds no state dict of tensors "
                     f"(got {type(obj).__name__})")


def check_images(images: Tensor, shape: str = "[N, 3, H, W]") -> None:
    """Raise unless `images` is a float tensor of `shape` with H and W multiples of 32."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    ndim = shape.count(",") + 1
    if images.dim() != ndim or images.shape[-3] != 3:
        raise ValueError(f"images must have shape {shape}, got {list(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point, got {images.dtype}")
    h, w = images.shape[-2:]
    if h % TRUNK_STRIDE or w % TRUNK_STRIDE:
        raise ValueError(f"image height and width must be multiples of {TRUNK_STRIDE} (the "
                         f"trunk stride, so heatmap voxels align with pixels), got {h}x{w}")
