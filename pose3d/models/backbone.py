"""ResNet trunks (torchvision ResNet-10/18/34/50 without global pooling and fc), stride 32.

Initial weights: `weights_path="imagenet"` takes torchvision's published ImageNet weights
(IMAGENET1K_V1, the classic ones the paper's ResNet-50 starts from) through torchvision's
weights API: downloaded once into the torch hub cache ($TORCH_HOME/hub/checkpoints, by default
~/.cache/torch/hub/checkpoints) and read from there afterwards; on a machine without network
the file can be copied there by hand. Any other `weights_path` is a local torchvision state
dict file.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision import models


def resnet10(weights: None = None) -> models.ResNet:
    """ResNet-10: ResNet-18's stem and widths with one basic block per stage (4.9 M
    parameters against 11.2 M). No published ImageNet weights: for quick runs and tests."""
    if weights is not None:
        raise ValueError("resnet10 has no published weights")
    return models.ResNet(models.resnet.BasicBlock, [1, 1, 1, 1])


RESNETS = {
    "resnet10": (resnet10, 512),
    "resnet18": (models.resnet18, 512),
    "resnet34": (models.resnet34, 512),
    "resnet50": (models.resnet50, 2048),
}
TRUNK_STRIDE = 32
IMAGENET = "imagenet"
IMAGENET_WEIGHTS = {
    "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": models.ResNet50_Weights.IMAGENET1K_V1,
}


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
    """A ResNet trunk, randomly initialised, ImageNet-initialised (`weights_path="imagenet"`)
    or loaded from a local state-dict file."""
    trunk = ResNetTrunk(name)
    if weights_path is not None and str(weights_path) == IMAGENET:
        load_imagenet_weights(trunk)
    elif weights_path is not None:
        load_trunk_weights(trunk, weights_path)
    return trunk


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision keeps (and looks for) the ImageNet weights of ResNet `name`."""
    url = IMAGENET_WEIGHTS[name].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def load_imagenet_weights(trunk: ResNetTrunk) -> None:
    """Load torchvision's ImageNet weights into `trunk`: from the torch hub cache, downloaded
    there first if absent. Without network and without the file, FileNotFoundError in one
    line naming the file, where it comes from and where to put it."""
    if trunk.name not in IMAGENET_WEIGHTS:
        raise ValueError(f"no published ImageNet weights for {trunk.name}; choose one of "
                         f"{', '.join(IMAGENET_WEIGHTS)} or leave the backbone's weights unset")
    weights = IMAGENET_WEIGHTS[trunk.name]
    path = imagenet_weights_file(trunk.name)
    try:
        state = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except OSError as exc:  # URLError, HTTPError, socket errors: no way to download
        reason = getattr(exc, "reason", exc)
        raise FileNotFoundError(
            f"ImageNet weights for {trunk.name} are not in the torch hub cache and could not be "
            f"downloaded ({reason}): put {path.name} (from {weights.url}) at {path}") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"cached ImageNet weights {path} are unreadable ({exc}); delete the "
                         "file to download it again") from None
    _load_state(trunk, _state_dict_of(state, path), path)


def load_trunk_weights(trunk: ResNetTrunk, weights_path: str | Path) -> None:
    """Load a torchvision ResNet state dict (its fc.* entries are ignored) into `trunk`.

    Raises FileNotFoundError for a missing file and ValueError, in one line, when the file
    does not hold a state dict of this architecture.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a malformed file fails in any way (IndexError ...)
        # weights_only refuses anything but tensors and plain containers: say so in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"weights file {path} is not a torch state dict ({first})") from None
    _load_state(trunk, _state_dict_of(obj, path), path)


def _load_state(trunk: ResNetTrunk, state: Mapping[str, Tensor], path: Path) -> None:
    """`state` (a torchvision ResNet state dict read from `path`) into `trunk`, fc.* left
    out; ValueError in one line when it does not fit."""
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
