"""`Predictions`: one model's world-mm predictions and GT per (tuple, view) with their labels,
the input of the evaluation report and of the view-agreement numbers; saved as .npz."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Predictions:
    """One model's predictions: pred, gt [N, 17, 3] world mm; labels [N] per (tuple, view),
    key 'TUPLE/VIEW'; rotation [N, 3, 3] the view's world -> camera rotation, if known."""

    pred: np.ndarray
    gt: np.ndarray
    camera: list[str]
    action: list[str]
    subject: list[str]
    key: list[str]
    rotation: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.pred)
        for name in ("gt", "camera", "action", "subject", "key", "rotation"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"Predictions.{name} has {len(getattr(self, name))} entries, "
                                 f"pred has {n}")

    def save(self, path: str | Path) -> None:
        extra = {} if self.rotation is None else {"rotation": self.rotation}
        np.savez_compressed(path, pred=self.pred, gt=self.gt, camera=np.array(self.camera),
                            action=np.array(self.action), subject=np.array(self.subject),
                            key=np.array(self.key), **extra)

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        with np.load(path) as f:
            return cls(f["pred"], f["gt"], *(f[k].tolist() for k in
                                              ("camera", "action", "subject", "key")),
                       rotation=f["rotation"] if "rotation" in f.files else None)
