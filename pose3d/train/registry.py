"""The stage registry: cfg.stage -> the object that runs it (a training stage for the loop,
or the offline P-GT stage)."""

from __future__ import annotations

from pose3d.train.config import ConfigError
from pose3d.train.pgt import PseudoGroundTruth
from pose3d.train.stages import Finetune, MultiViewPretrain, SingleViewPretrain

STAGES = {"mv_pretrain": MultiViewPretrain, "pgt": PseudoGroundTruth,
          "sv_pretrain": SingleViewPretrain, "finetune": Finetune}


def make_stage(name: str):
    """The stage object for `name` (cfg.stage)."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return STAGES[name]()
