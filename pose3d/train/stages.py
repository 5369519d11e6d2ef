"""The training stages of the method (docs/design.md, section 4).

    mv_pretrain  F_mv (algebraic triangulation) on labeled tuples: L1 of the triangulated
                 joints (mm) plus L1 of the 2D joints
    pgt          offline: F_mv on the unlabeled tuples -> new shards carrying P-GT
                 (pose3d.train.pgt)

The registry that maps cfg.stage to these is pose3d.train.registry.
    sv_pretrain  F_sv (integral regression) on labeled tuples, L1 in heatmap space ("Base")
    finetune     F_sv on labeled GT + unlabeled P-GT, eq. 10: λ1 L_pose + λ2 L_mv
                 ("L1-only" when loss.lambda_mv = 0, "Ours" otherwise; loss.mv_mode and
                 loss.lambda_bone add the remedies of pose3d.losses.remedies)

Every view of a tuple goes through the single-view model on the same rank, so L_mv sees
all of a tuple's predictions without any communication.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from pose3d.data.draw import overlay_views
from pose3d.data.loader import count_samples, make_train_loader
from pose3d.data.shards import load_manifest
from pose3d.geometry import HeatmapSpace, project
from pose3d.losses import mv_pretrain_loss, pose_targets, prediction_to_world, total_loss
from pose3d.train.config import ConfigError, stage_optim
from pose3d.train.distributed import DistInfo
from pose3d.train.sources import stage_shards
from pose3d.train.stage_base import StepContext, StepOutput, TrainStage


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

    def shard_folders(self, cfg: DictConfig) -> dict[str, tuple[str, str]]:
        """config key -> (folder, role) this stage trains on; read through
        pose3d.train.sources.stage_shards, which refuses the eval role."""
        return {"data.root": (cfg.data.root, cfg.data.labeled_role)}

    def check_inputs(self, cfg: DictConfig) -> None:
        for key, (folder, role) in self.shard_folders(cfg).items():
            stage_shards(cfg, key, folder, role)
            check_image_size(folder, cfg)
        super().check_inputs(cfg)

    def _shards(self, cfg: DictConfig) -> list[list[str]]:
        return [stage_shards(cfg, key, folder, role) for key, (folder, role) in
                self.shard_folders(cfg).items()]

    def batches_per_epoch(self, cfg: DictConfig, dist: DistInfo) -> int:
        """data.batches_per_epoch, or where it is null one pass over the stage's tuples (for
        finetune GT and P-GT together) per rank: ceil(ceil(tuples / ranks) / batch size),
        the tuples counted from the manifests `pose3d convert` / the P-GT stage wrote."""
        if cfg.data.batches_per_epoch is not None:
            return int(cfg.data.batches_per_epoch)
        tuples = count_samples([u for group in self._shards(cfg) for u in group])
        per_rank = -(-tuples // dist.world_size)
        return max(1, -(-per_rank // stage_optim(cfg).batch_size))

    def train_loader(self, cfg: DictConfig, epoch: int, dist: DistInfo) -> Iterable[dict]:
        # one group per folder: a fine-tuning's GT and P-GT are mixed in proportion to their
        # sizes from the first batch (pose3d.data.loader._TrainSource)
        return make_train_loader(
            self._shards(cfg), stage_optim(cfg).batch_size, num_workers=cfg.data.num_workers,
            seed=cfg.run.seed, epoch=epoch,
            batches_per_epoch=self.batches_per_epoch(cfg, dist),
            rank=dist.rank, world_size=dist.world_size, augment=cfg.data.augment,
            shuffle_buffer=cfg.data.shuffle_buffer, pin_memory=dist.device.type == "cuda",
            image_size=cfg.data.image_size, decode_on_device=cfg.data.decode_on_device,
            augment_colour=cfg.data.augment_colour)


class MultiViewPretrain(_ShardStage):
    """F_mv on labeled tuples."""

    name = "mv_pretrain"

    def model_config(self, cfg: DictConfig) -> DictConfig:
        return cfg.model.mv

    def arch(self, cfg: DictConfig) -> dict:
        m = cfg.model.mv
        return {"kind": "multi_view", "backbone": m.backbone,
                "deconv_channels": m.deconv_channels, "num_deconv": m.num_deconv}

    def step(self, model: nn.Module, batch: dict, ctx: StepContext) -> StepOutput:
        b, v = batch["valid"].shape
        images = _images(batch, ctx).view(b, v, *batch["images"].shape[2:])
        out = model(images, batch["K"], batch["R"], batch["t"], batch["valid"],
                    return_heatmaps=self.lambda_heatmap > 0)
        loss, parts = mv_pretrain_loss(out, batch["joints3d"], batch["has_joints3d"],
                                       batch["K"], batch["R"], batch["t"], batch["valid"],
                                       lambda_3d=self.lambda_3d, lambda_2d=self.lambda_2d,
                                       stride=self.stride, lambda_heatmap=self.lambda_heatmap,
                                       heatmap_sigma=self.heatmap_sigma)
        use = out["valid3d"] & batch["has_joints3d"][:, None]
        err = (out["joints3d"].detach() - batch["joints3d"]).norm(dim=-1)
        mpjpe = (err * use).sum() / use.sum().clamp_min(1)  # absolute, world mm
        metrics = {"train/loss_3d": parts["3d"], "train/loss_2d": parts["2d"],
                   "train/mpjpe_abs_mm": mpjpe}
        if "heatmap" in parts:
            metrics["train/loss_heatmap"] = parts["heatmap"]
        return StepOutput(loss, metrics, {"joints2d": out["joints2d"].detach()})

    def picture(self, batch: dict, out: StepOutput) -> np.ndarray:
        return _first_tuple_picture(batch, out.outputs["joints2d"][0], batch["joints3d"][0],
                                    bool(batch["has_joints3d"][0]))

    def prepare(self, cfg: DictConfig, model: nn.Module) -> None:
        self.lambda_3d, self.lambda_2d = cfg.loss.lambda_3d, cfg.loss.lambda_2d
        self.lambda_heatmap, self.heatmap_sigma = cfg.loss.lambda_heatmap, cfg.loss.heatmap_sigma
        self.stride = float(model.stride)


class SingleViewPretrain(_ShardStage):
    """F_sv on labeled tuples, L1 in heatmap space ("Base")."""

    name = "sv_pretrain"

    def model_config(self, cfg: DictConfig) -> DictConfig:
        return cfg.model.sv

    def arch(self, cfg: DictConfig) -> dict:
        m = cfg.model.sv
        return {"kind": "single_view", "backbone": m.backbone,
                "deconv_channels": m.deconv_channels, "num_deconv": m.num_deconv,
                "depth_bins": m.depth_bins, "depth_range_mm": cfg.loss.depth_range_mm}

    def prepare(self, cfg: DictConfig, model: nn.Module) -> None:
        self.space: HeatmapSpace = model.heatmap_space(cfg.data.image_size)
        self.lambda_pose = cfg.loss.lambda_pose
        self.lambda_mv = self.consistency_weight(cfg)
        self.mv_mode, self.lambda_bone = cfg.loss.mv_mode, self.bone_weight(cfg)

    def consistency_weight(self, cfg: DictConfig) -> float:
        return 0.0  # Base: L_pose only (L_mv is still logged)

    def bone_weight(self, cfg: DictConfig) -> float:
        return 0.0

    def targets(self, batch: dict) -> tuple[Tensor, Tensor]:
        return batch["joints3d"], batch["has_joints3d"]

    def step(self, model: nn.Module, batch: dict, ctx: StepContext) -> StepOutput:
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
        world, root_depth = prediction_to_world(coords, target, batch["K"], batch["R"],
                                                batch["t"], self.space, batch["valid"])
        world = world - world[..., :1, :]
        rel = (target.float() - target[:, :1].float())[:, None]
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

    def shard_folders(self, cfg: DictConfig) -> dict[str, tuple[str, str]]:
        folders = {"data.root": (cfg.data.root, cfg.data.labeled_role)}
        if cfg.data.use_pgt:  # the P-GT stage's output: the unlabeled tuples with their P-GT
            folders["data.pgt_root"] = (cfg.data.pgt_root, cfg.data.unlabeled_role)
        return folders

    def consistency_weight(self, cfg: DictConfig) -> float:
        return cfg.loss.lambda_mv

    def bone_weight(self, cfg: DictConfig) -> float:
        return cfg.loss.lambda_bone

    def targets(self, batch: dict) -> tuple[Tensor, Tensor]:
        return pose_targets(batch["joints3d"], batch["has_joints3d"], batch["pgt"],
                            batch["has_pgt"])

