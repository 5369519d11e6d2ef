"""The training configuration: typed defaults, merged with a YAML file and key=value overrides.

`load_config("launch/configs/tiny.yaml", ["optim.lr=1e-3", "stage=finetune"])` returns an
OmegaConf DictConfig backed by `TrainConfig`: a key the dataclasses do not define, or a value
of the wrong type, raises ConfigError with a one-line message naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

STAGES = ("mv_pretrain", "pgt", "sv_pretrain", "finetune")
WANDB_MODES = ("online", "offline", "disabled")
LR_SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """A bad configuration: unknown key, wrong type, missing file, invalid value."""


@dataclass
class DataConfig:
    root: str = "data/synthetic"  # dataset folder with manifest.json (written by the studio)
    labeled_role: str = "labeled"
    unlabeled_role: str = "unlabeled"
    eval_role: str = "eval"
    pgt_root: str = "${run.root}/pgt_shards"  # P-GT shards: written by `pgt`, read by `finetune`
    image_size: int = 256
    num_workers: int = 2
    batches_per_epoch: int = 100  # per rank: every rank sees the same number of batches
    augment: bool = True
    shuffle_buffer: int = 100


@dataclass
class ModelConfig:
    backbone: str = "resnet50"
    deconv_channels: int = 256
    num_deconv: int = 3
    depth_bins: int = 64  # single-view only: D of the D x H x W volume
    weights_path: str = ""  # a pose3d checkpoint to start from (another stage's), "" for none
    backbone_weights: str = ""  # a torchvision ResNet state dict (ImageNet), "" for random


@dataclass
class ModelsConfig:
    sv: ModelConfig = field(default_factory=ModelConfig)
    mv: ModelConfig = field(default_factory=ModelConfig)
    # finetune starts from Base (sv_pretrain's result) unless model.sv.weights_path says
    # otherwise; "" starts it from scratch
    finetune_init: str = "${run.root}/sv_pretrain/checkpoints/latest.pt"
    # sv_pretrain: an mv_pretrain checkpoint whose trunk and 2D head start the single-view
    # model (the 2D heatmaps repeated over depth, SingleViewModel.init_from_multi_view), so
    # Base begins with the multi-view model's 2D skill; "" for none. model.sv.weights_path,
    # when set, wins.
    sv_init_from_mv: str = ""


@dataclass
class StageOptimConfig:
    epochs: int = 1
    batch_size: int = 8  # multi-view tuples per rank (a tuple's views stay together)
    lr: float = 1e-4


@dataclass
class OptimConfig:
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0  # 0 = no clipping
    # constant: the stage's lr throughout; cosine: from lr down to 0 over the stage's steps
    lr_schedule: str = "constant"
    mv_pretrain: StageOptimConfig = field(
        default_factory=lambda: StageOptimConfig(epochs=6, batch_size=8, lr=1e-4))
    sv_pretrain: StageOptimConfig = field(
        default_factory=lambda: StageOptimConfig(epochs=20, batch_size=8, lr=1e-3))
    finetune: StageOptimConfig = field(
        default_factory=lambda: StageOptimConfig(epochs=9, batch_size=6, lr=1e-4))
    pgt: StageOptimConfig = field(  # inference only: batch_size is used, epochs and lr not
        default_factory=lambda: StageOptimConfig(epochs=1, batch_size=8, lr=0.0))


@dataclass
class LossConfig:
    lambda_pose: float = 1.0  # λ1 of eq. 10
    # λ2 of eq. 10: 0 gives the L1-only baseline; λ1·D/(3·J·S) weighs a voxel alike in L_pose
    # and L_mv (6.3e-4 for D=64, S=2000)
    lambda_mv: float = 3e-4
    # which L_mv λ2 weighs: pairwise (eq. 9, the paper's) | scale_normalised (eq. 9 on poses
    # scaled to the target's size, so that shrinking cannot lower it); pose3d.losses.remedies
    mv_mode: str = "pairwise"
    lambda_bone: float = 0.0  # finetune: bone lengths after Π against the target's (mm)
    depth_range_mm: float = 2000.0  # S of eq. 7
    lambda_3d: float = 1.0  # mv_pretrain: L1 of the triangulated joints (mm)
    lambda_2d: float = 1.0  # mv_pretrain: L1 of the 2D joints (heatmap pixels)


@dataclass
class PgtConfig:
    checkpoint: str = "${run.root}/mv_pretrain/checkpoints/latest.pt"  # the multi-view model
    samples_per_shard: int = 1000


@dataclass
class RunConfig:
    root: str = "runs/default"  # the experiment folder; each stage writes under it
    out_dir: str = "${run.root}/${stage}"  # this run's folder: checkpoints, W&B, config
    seed: int = 0
    resume: str = "auto"  # auto (if a checkpoint exists) | latest (must exist) | none | a path
    ckpt_every_steps: int = 500
    keep_checkpoints: int = 3
    log_every_steps: int = 20
    image_every_steps: int = 500
    wandb: str = "disabled"  # online | offline | disabled
    wandb_project: str = "pose3d"
    wandb_name: str = ""
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on GPU
    channels_last: bool = True  # on GPU
    compile: bool = False
    dist_timeout_s: int = 600
    progress: bool = True  # the tqdm bar on rank 0


@dataclass
class TrainConfig:
    stage: str = "sv_pretrain"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelsConfig = field(default_factory=ModelsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    pgt: PgtConfig = field(default_factory=PgtConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _one_line(exc: OmegaConfBaseException) -> str:
    """OmegaConf messages span several lines (full_key, object_type ...): keep the first and
    name the key."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    key = getattr(exc, "full_key", None)
    if isinstance(exc, ConfigKeyError) and key:
        return f"unknown config key {key!r}"
    return f"{first} (key: {key})" if key and key not in first else first


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
                ) -> DictConfig:
    """Defaults <- YAML file <- `key=value` overrides, validated; interpolations resolved."""
    try:
        cfg = OmegaConf.structured(TrainConfig)
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        bad = [o for o in overrides if "=" not in o or o.startswith("=")]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad[0]!r}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_one_line(exc)}") from None
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Value checks the types cannot express."""
    if cfg.stage not in STAGES:
        raise ConfigError(f"stage must be one of {', '.join(STAGES)}, got {cfg.stage!r}")
    if cfg.run.wandb not in WANDB_MODES:
        raise ConfigError(f"run.wandb must be one of {', '.join(WANDB_MODES)}, "
                          f"got {cfg.run.wandb!r}")
    if cfg.optim.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"optim.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                          f"got {cfg.optim.lr_schedule!r}")
    if cfg.run.device not in ("auto", "cpu", "cuda") and not cfg.run.device.startswith("cuda:"):
        raise ConfigError(f"run.device must be auto, cpu or cuda, got {cfg.run.device!r}")
    positive = {
        "data.image_size": cfg.data.image_size,
        "data.batches_per_epoch": cfg.data.batches_per_epoch,
        "run.ckpt_every_steps": cfg.run.ckpt_every_steps,
        "run.log_every_steps": cfg.run.log_every_steps,
        "run.image_every_steps": cfg.run.image_every_steps,
        "run.keep_checkpoints": cfg.run.keep_checkpoints,
        f"optim.{cfg.stage}.batch_size": stage_optim(cfg).batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    for key in ("lambda_pose", "lambda_mv", "lambda_3d", "lambda_2d", "lambda_bone"):
        if cfg.loss[key] < 0:
            raise ConfigError(f"loss.{key} must be >= 0, got {cfg.loss[key]}")
    _validate_mv_mode(cfg.loss.mv_mode)


def _validate_mv_mode(mode: str) -> None:
    from pose3d.losses.remedies import CONSISTENCY_MODES  # torch: only when validating

    if mode not in CONSISTENCY_MODES:
        raise ConfigError(f"loss.mv_mode must be one of {', '.join(CONSISTENCY_MODES)}, "
                          f"got {mode!r}")


def stage_optim(cfg: DictConfig) -> StageOptimConfig:
    """The epochs / batch size / learning rate of the configured stage."""
    return cfg.optim[cfg.stage]


def learning_rate(cfg: DictConfig, step: int, total_steps: int) -> float:
    """The stage's learning rate for the optimiser step after `step` steps (of `total_steps`).
    A function of the step alone, so a resumed run continues the same schedule."""
    lr = stage_optim(cfg).lr
    if cfg.optim.lr_schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    return lr


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
