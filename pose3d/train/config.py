"""The training configuration: typed defaults, merged with a YAML file and key=value overrides.

`load_config("launch/configs/tiny.yaml", ["optim.lr=1e-3", "stage=finetune"])` returns an
OmegaConf DictConfig backed by `TrainConfig`: a key the dataclasses do not define, or a value
of the wrong type, raises ConfigError with a one-line message naming the key.
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

STAGES = ("mv_pretrain", "pgt", "sv_pretrain", "finetune")
WANDB_MODES = ("online", "offline", "disabled")
LR_SCHEDULES = ("constant", "cosine")
LR_SCALINGS = ("none", "linear", "sqrt")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DDP_MODES = ("auto", "always")


class ConfigError(ValueError):
    """A bad configuration: unknown key, wrong type, missing file, invalid value."""


@dataclass
class DataConfig:
    root: str = "data/synthetic"  # dataset folder with manifest.json (written by the studio)
    labeled_role: str = "labeled"
    unlabeled_role: str = "unlabeled"
    eval_role: str = "eval"
    pgt_root: str = "${run.root}/pgt_shards"  # P-GT shards: written by `pgt`, read by `finetune`
    # finetune: read the P-GT shards beside the labeled GT; false is the GT-only control
    # (the same fine-tuning on the labeled tuples alone: P-GT's effect is L1-only - GT-only)
    use_pgt: bool = True
    image_size: int = 256
    num_workers: int = 2
    # batches per epoch, per rank (every rank sees the same number); null: one pass over the
    # stage's tuples per rank, from the sample counts in the shard folders' manifests
    batches_per_epoch: int | None = None
    augment: bool = True
    # each training tuple recoloured (channels permuted, hues rotated, some grey), the same
    # in all its views: for models that must meet people dressed unlike the labeled ones
    augment_colour: bool = False
    shuffle_buffer: int = 100
    # the workers pass the JPEG bytes on and the trainer decodes a whole batch on its device
    # (torchvision.io.decode_jpeg; nvJPEG on a GPU, libjpeg on a CPU): for a step faster than
    # the workers can decode. Needs augment=false (augmentation works on decoded pixels).
    decode_on_device: bool = False


@dataclass
class ModelConfig:
    backbone: str = "resnet50"
    deconv_channels: int = 256
    num_deconv: int = 3
    depth_bins: int = 64  # single-view only: D of the D x H x W volume
    # a pose3d checkpoint of this model to start from, "" for none (see initial_weights)
    weights_path: str = ""
    # the trunk's initial weights: "imagenet" (torchvision's, via the torch hub cache), a
    # local torchvision ResNet state dict file, or "" for random
    backbone_weights: str = ""


@dataclass
class ModelsConfig:
    sv: ModelConfig = field(default_factory=ModelConfig)
    mv: ModelConfig = field(default_factory=ModelConfig)
    # finetune: Base (sv_pretrain's result) to start from; "" for scratch (see initial_weights)
    finetune_init: str = "${run.root}/sv_pretrain/checkpoints/latest.pt"
    # sv_pretrain: an mv_pretrain checkpoint whose trunk and 2D head start the single-view
    # model (SingleViewModel.init_from_multi_view); "" for none (see initial_weights)
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
    # The stage's lr is the lr at lr_reference_batch tuples per step over all ranks; a run
    # with B tuples per rank on W ranks steps with lr x (B W / reference) (linear, Goyal et
    # al. 2017), lr x sqrt(B W / reference) (sqrt), or the lr as given (none).
    lr_scaling: str = "none"
    lr_reference_batch: int = 8
    # Adam's multi-tensor step: fused=True on CUDA, foreach=True elsewhere
    # (pose3d.train.optimizer.optimizer_options)
    fused: bool = False
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
    # λ2 of eq. 10: 0 gives the L1-only baseline; 2.5e-4 is the value for D = 64 depth bins
    # (docs/design.md, eq. 10: why, and how it scales with D)
    lambda_mv: float = 2.5e-4
    # which L_mv λ2 weighs: pairwise (eq. 9, the paper's) | scale_normalised (eq. 9 on poses
    # scaled to the target's size, so that shrinking cannot lower it); pose3d.losses.remedies
    mv_mode: str = "pairwise"
    lambda_bone: float = 0.0  # finetune: bone lengths after Π against the target's (mm)
    depth_range_mm: float = 2000.0  # S of eq. 7
    lambda_3d: float = 1.0  # mv_pretrain: L1 of the triangulated joints (mm)
    lambda_2d: float = 1.0  # mv_pretrain: L1 of the 2D joints (heatmap pixels)
    # mv_pretrain: cross-entropy of the 2D heatmaps against a Gaussian of std heatmap_sigma
    # (heatmap pixels) at the true joint (pose3d.losses.mv_pretrain.heatmap_cross_entropy)
    lambda_heatmap: float = 0.0
    heatmap_sigma: float = 1.0


@dataclass
class PgtConfig:
    checkpoint: str = "${run.root}/mv_pretrain/checkpoints/latest.pt"  # the multi-view model
    samples_per_shard: int = 1000
    # test-time flip: average F_mv's 2D joints with its reading of the mirrored images
    flip_test: bool = False
    # > 0: per joint, leave out the view reprojecting more than this many pixels off (once)
    reject_px: float = 0.0
    # the 2D joints as the soft-argmax of this x the heatmap logits (1: as trained)
    sharpen: float = 1.0
    # > 0: leave out a tuple whose views disagree: its triangulated joints reproject more
    # than this many pixels (mean over views and joints) from the 2D joints they came from
    max_residual_px: float = 0.0


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
    # bf16 autocast on the CPU too, where it has native bf16 (pose3d.device.bf16_autocast):
    # about 1.4x faster on the demo's teacher with the same P-GT (docs/training.md,
    # "Configuration")
    amp_cpu: bool = False
    channels_last: bool = True  # on GPU
    compile: bool = False  # torch.compile of the model (after DDP wraps it)
    # torch.compile's mode: reduce-overhead adds CUDA graphs (a GPU lever, no separate switch)
    compile_mode: str = "default"
    # auto: a process group when torchrun starts more than one process; always: also for
    # one (DDP and NCCL exercised on a single GPU)
    ddp: str = "auto"
    dist_timeout_s: int = 600
    progress: bool = True  # the tqdm bar on rank 0
    # CPU threads per process, fixed; 0: auto, the process's share of the free cores, adapted
    # to other load while it trains (pose3d.threads; OMP_NUM_THREADS fixes it too)
    threads: int = 0


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


def _read_yaml(path: Path):
    """The YAML file as an OmegaConf node; malformed YAML is one line naming file and line."""
    try:
        node = OmegaConf.load(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"bad config: cannot parse {path}{where}: {problem}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"bad config: {path} must hold a mapping of keys, not a "
                          f"{type(node).__name__}")
    return node


def _parse_overrides(overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """`key=value` overrides as a config; a value that is not plain YAML (a `!!python/...`
    tag, an unclosed `[`) is one line naming the override. OmegaConf's YAML loader never
    constructs Python objects, so nothing has run."""
    for item in overrides:  # one by one, to name the bad one
        try:
            OmegaConf.from_dotlist([item])
        except yaml.YAMLError as exc:
            problem = (getattr(exc, "problem", None) or str(exc).splitlines()[0]).strip()
            raise ConfigError(f"bad config: override {item!r} is not a YAML value: "
                              f"{problem}") from None
    return OmegaConf.from_dotlist(list(overrides))


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
                ) -> DictConfig:
    """Defaults <- YAML file <- `key=value` overrides, validated; interpolations resolved."""
    try:
        cfg = OmegaConf.structured(TrainConfig)
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            cfg = OmegaConf.merge(cfg, _read_yaml(path))
        bad = [o for o in overrides if "=" not in o or o.startswith("=")]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad[0]!r}")
        cfg = OmegaConf.merge(cfg, _parse_overrides(overrides))
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_one_line(exc)}") from None
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


# One rule per numeric config key, first match wins; `STAGE` stands for the configured stage
# (the other stages' optim values are not used by this run, only checked to be finite). A
# new key needs one row here (a float key that no row names must still be finite).
_RULES: tuple[tuple[str, str], ...] = (
    ("data.image_size", "multiple_of_32"),
    ("data.batches_per_epoch", "positive"),
    ("data.num_workers", "non_negative"),
    ("data.shuffle_buffer", "tuples_in_memory"),  # 0 = no shuffling
    ("model.*.deconv_channels", "positive"),
    ("model.*.num_deconv", "non_negative"),
    ("model.*.depth_bins", "positive"),
    ("optim.weight_decay", "non_negative"),
    ("optim.grad_clip_norm", "non_negative"),  # 0 = off
    ("optim.lr_reference_batch", "positive"),
    ("optim.pgt.lr", "finite"),  # the P-GT stage is inference only: lr and epochs unused
    ("optim.pgt.epochs", "finite"),
    ("optim.STAGE.epochs", "positive"),
    ("optim.STAGE.batch_size", "positive_tuples_in_memory"),
    ("optim.STAGE.lr", "non_negative"),  # 0 keeps the weights: a baseline run, as in tests
    ("loss.depth_range_mm", "positive"),
    ("loss.heatmap_sigma", "positive"),
    ("loss.*", "non_negative"),  # the loss weights λ
    ("pgt.samples_per_shard", "positive"),
    ("pgt.reject_px", "non_negative"),  # 0 = off
    ("pgt.max_residual_px", "non_negative"),  # 0 = off
    ("pgt.sharpen", "positive"),
    ("run.ckpt_every_steps", "positive"),
    ("run.log_every_steps", "positive"),
    ("run.image_every_steps", "positive"),
    ("run.keep_checkpoints", "positive"),
    ("run.dist_timeout_s", "positive"),
    ("run.threads", "non_negative"),  # 0 = auto
)
INT64_LIMIT = 2 ** 63
_IN_MEMORY = ("fit in this machine's memory (each tuple holds at least one 3 x "
              "data.image_size^2 float32 view)")
_CHECKS: dict[str, tuple[Callable[[float, DictConfig], bool], str]] = {
    "finite": (lambda v, cfg: True, "must be finite"),
    "non_negative": (lambda v, cfg: v >= 0, "must be >= 0"),
    "positive": (lambda v, cfg: v > 0, "must be positive"),
    "multiple_of_32": (lambda v, cfg: v > 0 and v % 32 == 0,
                       "must be a positive multiple of 32 (the ResNet trunk's stride)"),
    "tuples_in_memory": (lambda v, cfg: 0 <= v and _tuples_fit(v, cfg),
                         f"must be >= 0 and {_IN_MEMORY}"),
    "positive_tuples_in_memory": (lambda v, cfg: 0 < v and _tuples_fit(v, cfg),
                                  f"must be positive and {_IN_MEMORY}"),
}


def _physical_memory() -> int:
    """This machine's RAM in bytes (2^50 where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 ** 50


def _tuples_fit(count: float, cfg: DictConfig) -> bool:
    """Whether `count` tuples can be held at once: a lower bound of their size (one float32
    view of data.image_size px) within the RAM, so that a batch or buffer that cannot fit is
    refused before the loader starts filling it (not after minutes of swapping)."""
    side = max(int(cfg.data.image_size), 1) if math.isfinite(cfg.data.image_size) else 1
    return count * 3 * side * side * 4 <= _physical_memory()
# Names checked against what exists: key pattern -> the allowed values.
_CHOICES: tuple[tuple[str, Callable[[], tuple[str, ...]]], ...] = (
    ("stage", lambda: STAGES),
    ("run.wandb", lambda: WANDB_MODES),
    ("optim.lr_schedule", lambda: LR_SCHEDULES),
    ("optim.lr_scaling", lambda: LR_SCALINGS),
    ("run.compile_mode", lambda: COMPILE_MODES),
    ("run.ddp", lambda: DDP_MODES),
    ("model.*.backbone", lambda: tuple(_backbones())),
    ("loss.mv_mode", lambda: tuple(_consistency_modes())),
)


def _backbones() -> tuple[str, ...]:
    from pose3d.models.backbone import RESNETS

    return tuple(RESNETS)


def _consistency_modes() -> tuple[str, ...]:
    from pose3d.losses.remedies import CONSISTENCY_MODES

    return tuple(CONSISTENCY_MODES)


def _leaves(node, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            out.extend(_leaves(value, name + "."))
        else:
            out.append((name, value))
    return out


def _rule(key: str, stage: str, rules: tuple[tuple[str, object], ...]):
    for pattern, rule in rules:
        if fnmatch.fnmatchcase(key, pattern.replace("STAGE", stage)):
            return rule
    return None


def validate(cfg: DictConfig) -> None:
    """Every value's range and every name against its registry (_RULES, _CHOICES), before
    any work: ConfigError with one line naming the key."""
    if cfg.stage not in STAGES:
        raise ConfigError(f"bad config: stage must be one of {', '.join(STAGES)}, "
                          f"got {cfg.stage!r}")
    for key, value in _leaves(cfg):
        choices = _rule(key, cfg.stage, _CHOICES)
        if choices is not None and value not in choices():
            raise ConfigError(f"bad config: {key} must be one of {', '.join(choices())}, "
                              f"got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, int) and not -INT64_LIMIT <= value < INT64_LIMIT:
            # torch, numpy and the samplers hold counts and seeds in int64
            raise ConfigError(f"bad config: {key} must lie in [-2^63, 2^63), got {value}")
        name = _rule(key, cfg.stage, _RULES) or "finite"
        check, what = _CHECKS[name]
        if not math.isfinite(value) or not check(value, cfg):
            raise ConfigError(f"bad config: {key} {what}, got {value}")
    if cfg.data.decode_on_device and (cfg.data.augment or cfg.data.augment_colour):
        raise ConfigError("bad config: data.decode_on_device needs data.augment=false and "
                          "data.augment_colour=false (the "
                          "augmentation works on decoded pixels in the loader's workers)")
    _validate_device(cfg.run.device)


def _validate_device(device: str) -> None:
    """auto | cpu | cuda | cuda:N, and a CUDA device only where one exists."""
    from pose3d.device import resolve_device  # torch: only when validating, as above

    try:
        resolve_device(device)
    except ValueError as exc:
        raise ConfigError(f"bad config: run.{exc} (use run.device=auto or cpu)") from None


def stage_optim(cfg: DictConfig) -> StageOptimConfig:
    """The epochs / batch size / learning rate of the configured stage."""
    return cfg.optim[cfg.stage]


@dataclass(frozen=True)
class InitialWeights:
    """The checkpoint a fresh run (not a resume) starts from."""

    path: str
    key: str  # the config key that names it
    from_multi_view: bool  # F_mv's trunk and 2D head into F_sv, else this model's own weights
    hint: str = ""  # what to do when the file is missing


def initial_weights(cfg: DictConfig) -> InitialWeights | None:
    """The one rule for the weights a fresh run of cfg.stage starts from: the trained model's
    model.<sv|mv>.weights_path when set; else, for finetune, model.finetune_init (Base); for
    sv_pretrain, model.sv_init_from_mv (F_mv's 2D skill); else none. Fine-tuning never starts
    from F_mv."""
    which = "mv" if cfg.stage == "mv_pretrain" else "sv"
    own = cfg.model[which].weights_path
    if own:
        return InitialWeights(own, f"model.{which}.weights_path", False)
    if cfg.stage == "finetune" and cfg.model.finetune_init:
        return InitialWeights(cfg.model.finetune_init, "model.finetune_init", False,
                              "run stage=sv_pretrain first, or set model.sv.weights_path, or "
                              "model.finetune_init='' to start from scratch")
    if cfg.stage == "sv_pretrain" and cfg.model.sv_init_from_mv:
        return InitialWeights(cfg.model.sv_init_from_mv, "model.sv_init_from_mv", True,
                              "run stage=mv_pretrain first, or set model.sv_init_from_mv=''")
    return None


def scaled_lr(cfg: DictConfig, world_size: int = 1) -> float:
    """The stage's lr scaled to its batch over all ranks, per optim.lr_scaling: the stage's
    lr holds at optim.lr_reference_batch tuples per step."""
    lr, ratio = stage_optim(cfg).lr, stage_optim(cfg).batch_size * world_size
    ratio /= cfg.optim.lr_reference_batch
    if cfg.optim.lr_scaling == "linear":
        return lr * ratio
    if cfg.optim.lr_scaling == "sqrt":
        return lr * math.sqrt(ratio)
    return lr


def learning_rate(cfg: DictConfig, step: int, total_steps: int, world_size: int = 1) -> float:
    """The learning rate for the optimiser step after `step` steps (of `total_steps`): the
    scaled lr (scaled_lr) under optim.lr_schedule. A function of the step alone, so a
    resumed run continues the same schedule."""
    lr = scaled_lr(cfg, world_size)
    if cfg.optim.lr_schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    return lr


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
