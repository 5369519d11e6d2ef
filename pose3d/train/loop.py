"""The training loop: one function, read top to bottom (nanoGPT style).

Every rank runs the stage's batches per epoch (data.batches_per_epoch, or one pass over
the stage's tuples per rank when that is null). Rank 0 logs and saves. A
checkpoint is written every run.ckpt_every_steps steps and at the end of every epoch; a run
restarted with run.resume=auto|latest continues from the newest one, at the same step.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pose3d.data.loader import MAX_SKIP_EXAMPLES
from pose3d.data.staging import check_writable
from pose3d.device import bf16_autocast
from pose3d.threads import ThreadGovernor
from pose3d.train import checkpoint, distributed
from pose3d.train.config import learning_rate, stage_optim, to_yaml
from pose3d.train.distributed import DistInfo
from pose3d.train.logger import Logger
from pose3d.train.optimizer import make_optimizer
from pose3d.train.run_lock import hold_run_folder
from pose3d.train.stage_base import StepContext, StepOutput, TrainStage, batch_to


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf: the run stops, the last good checkpoint stays."""

    def __init__(self, step: int, keys_by_rank: list[list[str] | None]) -> None:
        self.step = step
        self.keys = {r: k for r, k in enumerate(keys_by_rank) if k is not None}
        where = "; ".join(f"rank {r}: {', '.join(map(str, k))}" for r, k in self.keys.items())
        super().__init__(f"non-finite loss at step {step}; batch keys {where}")


@dataclass
class Position:
    """Where training stands: optimiser steps done, the epoch, steps done in that epoch."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0


def resume_path(cfg: DictConfig, ckpt_dir: Path) -> Path | None:
    """The checkpoint to resume from, per run.resume (auto | latest | none | a path)."""
    mode = cfg.run.resume
    if mode in ("none", ""):
        return None
    if mode in ("auto", "latest"):
        found = checkpoint.find_latest(ckpt_dir)
        if found is None and mode == "latest":
            raise checkpoint.CheckpointError(f"--resume latest: no checkpoint in {ckpt_dir}")
        return found
    return Path(mode)


def autocast(cfg: DictConfig, device: torch.device):
    """bf16 autocast on GPU with run.amp, on a CPU with native bf16 with run.amp_cpu; else
    float32 (pose3d.device.bf16_autocast)."""
    return bf16_autocast(device, on_gpu=cfg.run.amp, on_cpu=cfg.run.amp_cpu)


def train_step(model: nn.Module, stage: TrainStage, batch: dict, ctx: StepContext,
               cfg: DictConfig, scaler: torch.amp.GradScaler, step: int, info: DistInfo
               ) -> StepOutput:
    """Forward, backward (DDP all-reduces the gradients here), then the all-ranks check of
    the loss: NonFiniteLossError before the optimiser can take a NaN step. Checking after
    backward lets the host queue the backward pass while the forward pass still runs.
    `step` is the number of this step (1-based), for the error message."""
    with autocast(cfg, info.device):
        out = stage.step(model, batch, ctx)
    scaler.scale(out.loss).backward()
    _check_finite(out.loss, step, batch, info)
    return out


def _check_finite(loss: torch.Tensor, step: int, batch: dict, info: DistInfo) -> None:
    bad = not bool(torch.isfinite(loss.detach()).item())
    if distributed.any_rank(bad, info.device):
        keys = distributed.all_gather_objects(list(batch.get("key", [])) if bad else None)
        raise NonFiniteLossError(step, keys)


def _save(ckpt_dir: Path, model: nn.Module, optimizer, scaler, pos: Position, cfg: DictConfig,
          fp: dict, info: DistInfo, per_epoch: int) -> None:
    rng = distributed.all_gather_objects(distributed.rng_state())  # collective: every rank
    if not info.is_main:
        return
    state = {"model": checkpoint.unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict(), "step": pos.step, "epoch": pos.epoch,
             "step_in_epoch": pos.step_in_epoch, "batches_per_epoch": per_epoch, "rng": rng,
             "world_size": info.world_size, "config": to_yaml(cfg), "fingerprint": fp}
    checkpoint.save(state, ckpt_dir, pos.step, keep=cfg.run.keep_checkpoints)


def _restore(ckpt: dict, optimizer, scaler, info: DistInfo) -> Position:
    saved = ckpt["optimizer"]
    for group in saved["param_groups"]:  # the step's implementation is this run's optim.fused
        group.update({k: optimizer.defaults.get(k) for k in ("foreach", "fused")})
    optimizer.load_state_dict(saved)
    scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt.get("rng") or []
    if ckpt.get("world_size") == info.world_size and info.rank < len(rng):
        distributed.set_rng_state(rng[info.rank])
    return Position(ckpt["step"], ckpt["epoch"], ckpt["step_in_epoch"])


class _SkipTally:
    """Samples and shards the loaders skipped since this process started (every epoch's
    loader), summed over ranks when logged; the first few named (rank 0's)."""

    REASONS = ("sample", "tar")

    def __init__(self) -> None:
        self.done: Counter = Counter()
        self.examples: list[str] = []

    def metrics(self, loader, device: torch.device) -> dict[str, float]:
        """Collective: every rank calls it at the same step."""
        current = self.done + Counter(getattr(loader, "skipped", {}))
        counts = distributed.all_reduce_sum(
            torch.tensor([float(current[r]) for r in self.REASONS], device=device))
        return {f"data/skipped_{r}": v for r, v in zip(self.REASONS, counts.tolist())}

    def end_epoch(self, loader) -> list[str]:
        """Add the epoch's loader; returns the examples first seen in it."""
        self.done.update(getattr(loader, "skipped", {}))
        room = MAX_SKIP_EXAMPLES - len(self.examples)
        new = list(getattr(loader, "skip_examples", []))[:max(room, 0)]
        self.examples += new
        return new


def check_resume_position(ckpt: dict, per_epoch: int, path: Path | None) -> None:
    """A mid-epoch checkpoint resumes only with the batches per epoch (`per_epoch`) it was
    written with: each epoch's batches depend on it (the per-worker quotas), so a resume with
    another value would neither repeat nor skip exactly the batches already trained on."""
    if not ckpt.get("step_in_epoch"):
        return  # at an epoch boundary any number of batches per epoch continues cleanly
    written = _saved_batches_per_epoch(ckpt)
    if written is None and ckpt["step_in_epoch"] < per_epoch:
        return
    if written != per_epoch:
        raise checkpoint.CheckpointError(
            f"checkpoint {path} stopped after batch {ckpt['step_in_epoch']} of epoch "
            f"{ckpt['epoch']} with data.batches_per_epoch={written or '?'}; resume it with that "
            f"value (a mid-epoch resume cannot change it), or start over with run.resume=none")


def _saved_batches_per_epoch(ckpt: dict) -> int | None:
    import yaml

    if ckpt.get("batches_per_epoch") is not None:
        return int(ckpt["batches_per_epoch"])
    try:
        value = (yaml.safe_load(ckpt.get("config") or "") or {})["data"]["batches_per_epoch"]
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    return int(value) if value is not None else None


class _Meter:
    """Sums over a logging interval, kept on the device (no host sync per step) and
    averaged over ranks when read."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.images = 0
        self.data_s = 0.0
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor], images: int, data_s: float) -> None:
        for k, v in metrics.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.steps += 1
        self.images += images
        self.data_s += data_s

    def read(self, device: torch.device) -> dict[str, float]:
        """Mean metrics over ranks, global images/s and the data-wait fraction."""
        elapsed = time.perf_counter() - self.start
        keys = sorted(self.sums)
        means = [self.sums[k].to(device) / max(self.steps, 1) for k in keys]
        extra = torch.tensor([self.data_s / max(elapsed, 1e-9), elapsed], device=device)
        mean = distributed.all_reduce_mean(torch.cat([torch.stack(means), extra])
                                           if means else extra).tolist()
        images = distributed.all_reduce_sum(torch.tensor([float(self.images)], device=device))
        out = dict(zip(keys, mean[:len(keys)]))
        out["perf/data_wait_fraction"] = mean[len(keys)]
        out["perf/images_per_s"] = float(images.item()) / max(mean[len(keys) + 1], 1e-9)
        return out


def fork_safe_opencv() -> None:
    """Keep OpenCV single-threaded in this process. The loader forks DataLoader workers
    every epoch, and a child forked after OpenCV started its thread pool (a resize for a
    W&B picture is enough) hangs on that pool's lock."""
    cv2.setNumThreads(0)


def train(cfg: DictConfig, stage: TrainStage) -> dict[str, float]:
    """Run a training stage under torchrun (or as one process). Returns the last logged
    metrics on rank 0 (an empty dict on the other ranks)."""
    fork_safe_opencv()
    info = distributed.setup(cfg.run.device, cfg.run.dist_timeout_s,
                             always=cfg.run.ddp == "always")
    try:
        # Everything that can be wrong with the inputs fails here, before any work.
        stage.check_inputs(cfg)
        check_writable(cfg.run.out_dir, "run folder (run.out_dir)")
        with hold_run_folder(cfg.run.out_dir, take=info.is_main):
            return _train(cfg, stage, info)
    finally:
        distributed.cleanup()


def _train(cfg: DictConfig, stage: TrainStage, info: DistInfo) -> dict[str, float]:
    out_dir = Path(cfg.run.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    optim_cfg = stage_optim(cfg)
    start_from = resume_path(cfg, ckpt_dir)
    ckpt = checkpoint.load(start_from) if start_from else None
    per_epoch = stage.batches_per_epoch(cfg, info)
    if ckpt is not None:
        check_resume_position(ckpt, per_epoch, start_from)
    distributed.seed_everything(cfg.run.seed, info.rank)
    model = stage.build_model(cfg)
    fp = checkpoint.fingerprint(model, stage.arch(cfg))
    if ckpt is not None:
        checkpoint.check_fingerprint(ckpt.get("fingerprint"), fp, start_from)
        model.load_state_dict(ckpt["model"])
    else:
        stage.load_initial_weights(cfg, model, fp)

    stage.prepare(cfg, model)
    model.to(info.device)
    channels_last = cfg.run.channels_last and info.device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model.parameters(), info.device, info.world_size)
    scaler = torch.amp.GradScaler(info.device.type, enabled=False)  # bf16 needs no scaling
    pos = _restore(ckpt, optimizer, scaler, info) if ckpt is not None else Position()
    del ckpt
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
        if info.is_main:  # what the GPU run's ddp phase checks
            print(f"pose3d train: DDP over {info.world_size} process(es), backend "
                  f"{torch.distributed.get_backend()}", flush=True)
    if cfg.run.compile:
        model = torch.compile(model, mode=cfg.run.compile_mode)
    model.train()

    logger = Logger(cfg, out_dir, info.is_main)
    if info.is_main:
        (out_dir / "config.yaml").write_text(to_yaml(cfg))
    total = optim_cfg.epochs * per_epoch
    bar = logger.progress(total, pos.step, f"{stage.name}", cfg.run.progress)
    ctx = StepContext(info.device, channels_last)
    meter, last, skips = _Meter(), {}, _SkipTally()
    governor = ThreadGovernor.for_run(cfg.run.threads, info.device)
    try:
        for epoch in range(pos.epoch, optim_cfg.epochs):
            skip = pos.step_in_epoch if epoch == pos.epoch else 0
            pos.epoch, pos.step_in_epoch = epoch, skip
            loader = stage.train_loader(cfg, epoch, info)
            batches = iter(loader)
            for _ in range(skip):  # a mid-epoch resume: the batches already trained on
                next(batches)
            for i in range(skip, per_epoch):
                t0 = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    raise RuntimeError(f"the {stage.name} loader ended after {i} of "
                                       f"{per_epoch} batches in epoch {epoch}")
                images = stage.num_images(batch)  # counted on the host: no device sync
                batch = batch_to(batch, info.device)
                data_s = time.perf_counter() - t0

                optimizer.zero_grad(set_to_none=True)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, pos.step, total, info.world_size)
                out = train_step(model, stage, batch, ctx, cfg, scaler, pos.step + 1, info)
                if cfg.optim.grad_clip_norm > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                pos.step += 1
                pos.step_in_epoch = i + 1
                end_of_epoch = pos.step_in_epoch == per_epoch
                bar.update()
                governor.step()

                meter.add({"train/loss": out.loss.detach(), **out.metrics}, images, data_s)
                if pos.step % cfg.run.log_every_steps == 0 or end_of_epoch:
                    last = meter.read(info.device)
                    last.update({"train/lr": optimizer.param_groups[0]["lr"],
                                 "train/epoch": epoch + pos.step_in_epoch / per_epoch,
                                 "perf/threads": governor.threads,
                                 **skips.metrics(loader, info.device)})
                    logger.log(last, pos.step)
                    bar.set_postfix(loss=f"{last['train/loss']:.4g}",
                                    img_s=f"{last['perf/images_per_s']:.0f}")
                    meter.reset()
                if pos.step % cfg.run.image_every_steps == 0 and info.is_main:
                    picture = stage.picture(batch, out)
                    if picture is not None:
                        logger.log_image("train/predictions", picture, pos.step,
                                         caption=str(batch.get("key", [""])[0]))
                if end_of_epoch:  # a checkpoint at the end of an epoch resumes at the next
                    pos.epoch, pos.step_in_epoch = epoch + 1, 0
                if end_of_epoch or pos.step % cfg.run.ckpt_every_steps == 0:
                    _save(ckpt_dir, model, optimizer, scaler, pos, cfg, fp, info, per_epoch)
            examples = skips.end_epoch(loader)
            if examples:
                logger.log_skips(examples, pos.step)
    finally:
        bar.close()
        logger.close()
    distributed.barrier()  # no rank tears the group down while another still talks to it
    return last if info.is_main else {}
