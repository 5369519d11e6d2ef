"""The training stages of the method (DESIGN.md section 1) and the stage registry.

    mv_pretrain  F_mv (algebraic triangulation) on labeled tuples: L1 of the triangulated
                 joints (mm) plus L1 of the 2D joints
    pgt          offline: F_mv on the unlabeled tuples -> new shards carrying P-GT
                 (pose3d.train.pgt)
    sv_pretrain  F_sv (integral regression) on labeled tuples, L1 in heatmap space ("Base")
    finetune     F_sv on labeled GT + unlabeled P-GT, eq. 10: λ1 L_pose + λ2 L_mv
                 ("L1-only" when loss.lambda_mv = 0, "Ours" otherwise; loss.mv_mode and
                 loss.lambda_bone add the remedies of pose3d.losses.remedies)

Every view of a tuple goes through the single-view model on the same rank, so L_mv sees
all of a tuple's predictions without any communication.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from pose3d.data.loader import make_train_loader
from pose3d.data.shards import load_manifest, resolve_shards
from pose3d.geometry import HeatmapSpace, heatmap_to_world, project
from pose3d.train.checkpoint import CheckpointError
from pose3d.train.checkpoint import load as load_checkpoint
from pose3d.train.config import ConfigError, stage_optim
from pose3d.train.distributed import DistInfo
from pose3d.train.stage import StepContext, StepOutput, TrainStage
from pose3d.train.visualize import overlay_views


def check_image_size(folder: str, cfg: DictConfig) -> None:
    """The shards must hold images of the configured input size."""
    size = load_manifest(folder).get("image_size")
    if size is not None and size != cfg.data.image_size:
        raise ConfigError(f"{folder} holds {size} px images but data.image_size is "
                          f"{cfg.data.image_size}")


def _images(batch: dict, ctx: StepContext) -> Tensor:
    """[B, V, 3, S, S] -> [B*V, 3, S, S], channels_last on GPU."""
    images = batch["images"].flatten(0, 1)
    return images.contiguous(memory_format=torch.channels_last) if ctx.channels_last else images


def _first_tuple_picture(batch: dict, pred2d: Tensor, target_world: Tensor | None,
                         has_target: bool) -> np.ndarray:
    """Views of the batch's first tuple with predicted (and target) 2D skeletons."""
    valid = batch["valid"][0].cpu()
    images = batch["images"][0].cpu()[valid]
    gt2d = None
    if target_world is not None and has_target:
        K, R, t = (batch[k][0].float().cpu() for k in ("K", "R", "t"))
        gt2d = project(target_world[None].float().cpu().expand(len(K), -1, -1), K, R, t)[valid]
    return overlay_views(images, pred2d.float().cpu()[valid], gt2d)


class _ShardStage(TrainStage):
    """A training stage that reads tuples from shard folders."""

    def shard_folders(self, cfg: DictConfig) -> dict[str, tuple[str, str | None]]:
        """config key -> (folder, role or None for every role) this stage trains on."""
        return {"data.root": (cfg.data.root, cfg.data.labeled_role)}

    def check_inputs(self, cfg: DictConfig) -> None:
        for key, (folder, role) in self.shard_folders(cfg).items():
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{key}: no such shard folder {folder}")
            resolve_shards(folder, role)
            check_image_size(folder, cfg)

    def train_loader(self, cfg: DictConfig, epoch: int, dist: DistInfo) -> Iterable[dict]:
        shards = [p for folder, role in self.shard_folders(cfg).values()
                  for p in resolve_shards(folder, role)]
        return make_train_loader(
            shards, stage_optim(cfg).batch_size, num_workers=cfg.data.num_workers,
            seed=cfg.run.seed, epoch=epoch, batches_per_epoch=cfg.data.batches_per_epoch,
            rank=dist.rank, world_size=dist.world_size, augment=cfg.data.augment,
            shuffle_buffer=cfg.data.shuffle_buffer, pin_memory=dist.device.type == "cuda")


class MultiViewPretrain(_ShardStage):
    """F_mv on labeled tuples."""

    name = "mv_pretrain"

    def model_config(self, cfg: DictConfig) -> DictConfig:
        return cfg.model.mv

    def arch(self, cfg: DictConfig) -> dict:
        m = cfg.model.mv
        return {"kind": "multi_view", "backbone": m.backbone,
                "deconv_channels": m.deconv_channels, "num_deconv": m.num_deconv}

    def build_model(self, cfg: DictConfig) -> nn.Module:
        return build_multi_view(cfg)

    def step(self, model: nn.Module, batch: dict, ctx: StepContext) -> StepOutput:
        from pose3d.losses import mv_pretrain_loss

        b, v = batch["valid"].shape
        images = _images(batch, ctx).view(b, v, *batch["images"].shape[2:])
        out = model(images, batch["K"], batch["R"], batch["t"], batch["valid"])
        loss, parts = mv_pretrain_loss(out, batch["joints3d"], batch["has_joints3d"],
                                       batch["K"], batch["R"], batch["t"], batch["valid"],
                                       lambda_3d=self.lambda_3d, lambda_2d=self.lambda_2d,
                                       stride=self.stride)
        use = out["valid3d"] & batch["has_joints3d"][:, None]
        err = (out["joints3d"].detach() - batch["joints3d"]).norm(dim=-1)
        mpjpe = (err * use).sum() / use.sum().clamp_min(1)  # absolute, world mm
        metrics = {"train/loss_3d": parts["3d"], "train/loss_2d": parts["2d"],
                   "train/mpjpe_abs_mm": mpjpe}
        return StepOutput(loss, metrics, {"joints2d": out["joints2d"].detach()})

    def picture(self, batch: dict, out: StepOutput) -> np.ndarray:
        return _first_tuple_picture(batch, out.outputs["joints2d"][0], batch["joints3d"][0],
                                    bool(batch["has_joints3d"][0]))

    def prepare(self, cfg: DictConfig, model: nn.Module) -> None:
        self.lambda_3d, self.lambda_2d = cfg.loss.lambda_3d, cfg.loss.lambda_2d
        self.stride = float(model.stride)


class SingleViewPretrain(_ShardStage):
    """F_sv on labeled tuples, L1 in heatmap space ("Base")."""

    name = "sv_pretrain"

    def model_config(self, cfg: DictConfig) -> DictConfig:
        return cfg.model.sv

    def arch(self, cfg: DictConfig) -> dict:
        return {"kind": "single_view", **super().arch(cfg)}

    def build_model(self, cfg: DictConfig) -> nn.Module:
        return build_single_view(cfg)

    def prepare(self, cfg: DictConfig, model: nn.Module) -> None:
        self.space: HeatmapSpace = model.heatmap_space(cfg.data.image_size)
        self.lambda_pose = cfg.loss.lambda_pose
        self.lambda_mv = self.consistency_weight(cfg)
        self.mv_mode, self.lambda_bone = cfg.loss.mv_mode, self.bone_weight(cfg)

    def consistency_weight(self, cfg: DictConfig) -> float:
        return 0.0  # Base: L_pose only (L_mv is still logged)

    def bone_weight(self, cfg: DictConfig) -> float:
        return 0.0

    def mv_init(self, cfg: DictConfig) -> str:
        """The mv_pretrain checkpoint a fresh run starts from, when no weights_path is set."""
        return "" if self.init_weights(cfg) else cfg.model.sv_init_from_mv

    def check_inputs(self, cfg: DictConfig) -> None:
        super().check_inputs(cfg)
        path = self.mv_init(cfg)
        if path and not os.path.isfile(path):
            raise CheckpointError(f"model.sv_init_from_mv: no such checkpoint {path} (run "
                                  f"stage=mv_pretrain first, or set model.sv_init_from_mv='')")

    def load_initial_weights(self, cfg: DictConfig, model: nn.Module, fp: dict) -> None:
        path = self.mv_init(cfg)
        if not path:
            return super().load_initial_weights(cfg, model, fp)
        ckpt = load_checkpoint(path)
        found = (ckpt.get("fingerprint") or {}).get("class")
        if found != "MultiViewTriangulationModel":
            raise CheckpointError(f"model.sv_init_from_mv: {path} holds a {found or 'non-pose3d'}"
                                  f" checkpoint, not a multi-view model (stage=mv_pretrain)")
        try:
            model.init_from_multi_view(ckpt["model"])
        except ValueError as e:
            raise CheckpointError(f"model.sv_init_from_mv: {path}: {e}") from None

    def targets(self, batch: dict) -> tuple[Tensor, Tensor]:
        return batch["joints3d"], batch["has_joints3d"]

    def step(self, model: nn.Module, batch: dict, ctx: StepContext) -> StepOutput:
        from pose3d.losses import total_loss

        b, v = batch["valid"].shape
        coords = model(_images(batch, ctx))["coords"].view(b, v, -1, 3)
        target, has_target = self.targets(batch)
        loss, parts = total_loss(coords, target, has_target, batch["K"], batch["R"],
                                 batch["t"], batch["valid"], self.space,
                                 lambda_pose=self.lambda_pose, lambda_mv=self.lambda_mv,
                                 mv_mode=self.mv_mode, lambda_bone=self.lambda_bone)
        metrics = {"train/loss_pose": parts["pose"], "train/loss_mv": parts["mv"],
                   "train/loss_bone": parts["bone"],
                   "train/mpjpe_mm": self._mpjpe(coords.detach(), target, has_target, batch)}
        return StepOutput(loss, metrics, {"coords": coords.detach(), "target": target,
                                          "has_target": has_target})

    def _mpjpe(self, coords: Tensor, target: Tensor, has_target: Tensor, batch: dict) -> Tensor:
        """Per-view prediction back in world mm with the target's root depth (Π), root-aligned
        MPJPE against the target, over valid views of tuples with a target (mm)."""
        from pose3d.losses import heatmap_targets

        with torch.autocast(coords.device.type, enabled=False):
            _, root_depth = heatmap_targets(target.float(), batch["K"], batch["R"], batch["t"],
                                            self.space, batch["valid"])
            world = heatmap_to_world(coords.float(), root_depth, batch["K"], batch["R"],
                                     batch["t"], self.space)
            world = world - world[..., :1, :]
            rel = (target - target[:, :1])[:, None]
            err = (world - rel).norm(dim=-1).mean(dim=-1)  # [B, V]
            use = batch["valid"] & has_target[:, None] & (root_depth > 0)
            return (err * use).sum() / use.sum().clamp_min(1)

    def picture(self, batch: dict, out: StepOutput) -> np.ndarray:
        pred2d = out.outputs["coords"][0][..., :2] * self.space.stride
        return _first_tuple_picture(batch, pred2d, out.outputs["target"][0],
                                    bool(out.outputs["has_target"][0]))


class Finetune(SingleViewPretrain):
    """F_sv on labeled GT + unlabeled P-GT, eq. 10."""

    name = "finetune"

    def shard_folders(self, cfg: DictConfig) -> dict[str, tuple[str, str | None]]:
        return {"data.root": (cfg.data.root, cfg.data.labeled_role),
                "data.pgt_root": (cfg.data.pgt_root, None)}

    def consistency_weight(self, cfg: DictConfig) -> float:
        return cfg.loss.lambda_mv

    def bone_weight(self, cfg: DictConfig) -> float:
        return cfg.loss.lambda_bone

    def init_weights(self, cfg: DictConfig) -> str:
        return cfg.model.sv.weights_path or cfg.model.finetune_init

    def mv_init(self, cfg: DictConfig) -> str:
        return ""  # fine-tuning starts from Base (or from scratch), never from F_mv

    def check_inputs(self, cfg: DictConfig) -> None:
        super().check_inputs(cfg)
        init = self.init_weights(cfg)
        if init and not os.path.isfile(init):
            raise CheckpointError(f"finetune starts from {init}, which does not exist (run "
                                  f"stage=sv_pretrain first, or set model.sv.weights_path, or "
                                  f"model.finetune_init='' to start from scratch)")

    def targets(self, batch: dict) -> tuple[Tensor, Tensor]:
        from pose3d.losses import pose_targets

        return pose_targets(batch["joints3d"], batch["has_joints3d"], batch["pgt"],
                            batch["has_pgt"])


def _model_options(m: DictConfig) -> dict:
    return {"backbone": m.backbone, "deconv_channels": m.deconv_channels,
            "num_deconv": m.num_deconv, "weights_path": m.backbone_weights or None}


def build_single_view(cfg: DictConfig) -> nn.Module:
    from pose3d.models import build_model

    return build_model({"kind": "single_view", "depth_bins": cfg.model.sv.depth_bins,
                        "depth_range_mm": cfg.loss.depth_range_mm,
                        **_model_options(cfg.model.sv)})


def build_multi_view(cfg: DictConfig) -> nn.Module:
    from pose3d.models import build_model

    return build_model({"kind": "multi_view", **_model_options(cfg.model.mv)})


def make_stage(name: str):
    """The stage object for `name` (cfg.stage)."""
    from pose3d.train.pgt import PseudoGroundTruth

    stages = {"mv_pretrain": MultiViewPretrain, "pgt": PseudoGroundTruth,
              "sv_pretrain": SingleViewPretrain, "finetune": Finetune}
    if name not in stages:
        raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(stages)}")
    return stages[name]()
