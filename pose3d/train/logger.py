"""Rank-0 logging: Weights & Biases (online, offline or disabled), a metrics.jsonl file, and a
tqdm bar. On other ranks every method is a no-op, so the loop calls them unconditionally.

The W&B mode is `run.wandb`, unless the WANDB_MODE environment variable says otherwise. The
W&B run id is kept in `<out_dir>/wandb_id.txt`, so a resumed run appends to the same W&B run.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import cv2
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from pose3d.data.staging import check_writable
from pose3d.train.config import WANDB_MODES, to_dict

WANDB_RESUME_TRIES = 20  # seconds a resumed run waits for a W&B run id still in use
_WANDB_SERVICE = "WANDB_SERVICE"  # wandb's variable naming the service process to connect to
_own_service: str | None = None  # the WANDB_SERVICE value that this process's wandb set


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def wandb_mode(cfg: DictConfig) -> str:
    mode = os.environ.get("WANDB_MODE", cfg.run.wandb)
    if mode == "dryrun":
        mode = "offline"
    if mode not in WANDB_MODES:
        raise ValueError(f"W&B mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
    return mode


def _use_own_wandb_service() -> None:
    """Start this process's own W&B service rather than join one named by an inherited
    WANDB_SERVICE (a parent that used W&B: `pose3d demo`'s evaluations, a notebook, a test
    process). A worker that torchrun kills leaves its run open in a service that outlives
    it, and the restarted worker could then never resume that run id ("in use"); a service
    of its own ends with it. Keeps the service this process started for an earlier run."""
    if os.environ.get(_WANDB_SERVICE, _own_service) != _own_service:
        del os.environ[_WANDB_SERVICE]


def _remember_own_wandb_service() -> None:
    global _own_service
    _own_service = os.environ.get(_WANDB_SERVICE)


class Logger:
    """Logs scalars and images on rank 0 only."""

    def __init__(self, cfg: DictConfig, out_dir: str | Path, is_main: bool) -> None:
        self.active = is_main
        self.out_dir = Path(out_dir)
        self.run = None
        self._jsonl = None
        if not self.active:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.out_dir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
        mode = wandb_mode(cfg)
        if mode != "disabled":
            self.run = self._init_wandb(cfg, mode)

    def _init_wandb(self, cfg: DictConfig, mode: str):
        import wandb  # takes seconds to import: only a run that logs to W&B pays for it

        check_writable(self.out_dir / "wandb", "W&B folder")  # one line, not wandb's traceback
        id_file = self.out_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
        id_file.write_text(run_id)
        name = cfg.run.wandb_name or f"{Path(cfg.run.root).name}-{cfg.stage}"
        _use_own_wandb_service()
        for attempt in range(WANDB_RESUME_TRIES):
            try:
                run = wandb.init(project=cfg.run.wandb_project, name=name, id=run_id,
                                 resume="allow", dir=str(self.out_dir), mode=mode,
                                 config=to_dict(cfg),
                                 settings=wandb.Settings(console="off", silent=True))
                _remember_own_wandb_service()
                return run
            except OSError as exc:
                raise PermissionError(f"W&B cannot write its files under {self.out_dir}: "
                                      f"{exc} (or set run.wandb=disabled)") from None
            except Exception as exc:
                # a run id still open in the service ("in use"): since each worker starts
                # its own service this needs a service that outlived a run's worker, which
                # _use_own_wandb_service prevents; kept as a short wait, not a lost run
                if "in use" not in str(exc) or attempt == WANDB_RESUME_TRIES - 1:
                    raise
                time.sleep(1.0)

    def log(self, scalars: dict[str, float], step: int) -> None:
        if not self.active:
            return
        clean = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._jsonl.flush()
        if self.run is not None:
            self.run.log(clean, step=step)

    def log_skips(self, examples: list[str], step: int) -> None:
        """Name skipped samples (shard, key, why) in metrics.jsonl and the W&B summary; their
        counts go with the scalars (data/skipped_*)."""
        if not self.active:
            return
        self._jsonl.write(json.dumps({"step": step, "time": time.time(),
                                      "skip_examples": examples}) + "\n")
        self._jsonl.flush()
        if self.run is not None:
            named = list(self.run.summary.get("data/skip_examples", None) or [])
            self.run.summary["data/skip_examples"] = named + examples

    def log_image(self, key: str, image: np.ndarray, step: int, caption: str = "") -> None:
        """`image`: uint8 [H, W, 3] RGB. Also saved as `<out_dir>/images/<key>_<step>.png`."""
        if not self.active:
            return
        folder = self.out_dir / "images"
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"{key.replace('/', '_')}_{step:08d}.png"), image[..., ::-1])
        if self.run is not None:
            import wandb  # already imported by _init_wandb: no cost

            self.run.log({key: wandb.Image(image, caption=caption)}, step=step)

    def progress(self, total: int, initial: int, desc: str, enabled: bool = True):
        if not (self.active and enabled):
            return _NoBar()
        return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self.run is not None:
            self.run.finish()
            self.run = None
