"""`build_model`: a model from its architecture arguments (what a checkpoint's fingerprint
records), the one constructor every stage, `load_model` and the benchmarks call."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from pose3d.models.multi_view import MultiViewTriangulationModel
from pose3d.models.single_view import SingleViewModel

MODELS: dict[str, type[nn.Module]] = {
    "single_view": SingleViewModel,
    "multi_view": MultiViewTriangulationModel,
}


def build_model(cfg: Mapping[str, Any] | Any) -> nn.Module:
    """A model from a config node: `kind` (single_view | multi_view) plus the keyword
    arguments of that model's constructor, e.g.
    `{kind: single_view, backbone: resnet50, depth_bins: 64, weights_path: null}`.
    Accepts a dict or an omegaconf DictConfig; unknown keys are an error."""
    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"model config must be a mapping, got {type(cfg).__name__}")
    options = dict(cfg)
    kind = options.pop("kind", None)
    if kind not in MODELS:
        raise ValueError(f"model config needs kind: one of {', '.join(MODELS)}; got {kind!r}")
    cls = MODELS[kind]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"unknown {kind} model option(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(sorted(accepted))}")
    return cls(**options)
