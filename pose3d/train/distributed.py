"""Process-group setup from the torchrun environment, and the few collectives the trainer uses.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them the
trainer runs as one process with no process group, and every helper here still works.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    group: bool = False  # in a process group (also of one process, with run.ddp=always)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.group


def pick_device(name: str, local_rank: int) -> torch.device:
    """'auto' -> this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"run.device={name} but CUDA is not available")
    return torch.device(name)


def setup(device: str = "auto", timeout_s: float = 600.0, always: bool = False) -> DistInfo:
    """Join the process group torchrun describes (NCCL on GPU, gloo on CPU): when it starts
    more than one process, or with `always` also for one (the trainer's run.ddp=always).

    The timeout bounds every collective, so a rank whose peer died raises instead of hanging
    forever (torchrun then restarts or stops the group).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    under_torchrun = "MASTER_ADDR" in os.environ and "RANK" in os.environ
    if (world_size > 1 or (always and under_torchrun)) and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        timeout = timedelta(seconds=timeout_s)
        dist.init_process_group(backend, store=_attempt_store(rank, world_size, timeout),
                                rank=rank, world_size=world_size, timeout=timeout, **kwargs)
    return DistInfo(rank, world_size, local_rank, dev, group=dist.is_initialized())


def _attempt_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """torchrun's store, under a prefix per restart: after `--max-restarts` restarts a worker
    group, the store can still hold the previous group's connection addresses, and workers
    that read them fail to connect (seen with gloo on torch 2.15)."""
    store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"pose3d/attempt_{attempt}", store)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over ranks (a new tensor; `x` itself is left alone)."""
    if not dist.is_initialized():
        return x.clone()
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / dist.get_world_size()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    y = x.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one (so all ranks branch alike)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj: object) -> list:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch with a per-rank seed, so ranks draw different
    augmentations while a rerun with the same seed draws the same ones."""
    s = seed * 1000 + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
