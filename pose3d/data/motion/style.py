"""How one person moves: a few style parameters drawn per subject, so that two people
doing the same action move differently (and one person moves alike in all its clips)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPO_RANGE = (0.8, 1.25)
AMPLITUDE_RANGE = (0.7, 1.3)
STOOP_RANGE_DEG = (-3.0, 12.0)
LEAN_RANGE_DEG = (-3.0, 5.0)
STANCE_RANGE_DEG = (-1.5, 4.0)


@dataclass(frozen=True)
class MotionStyle:
    """tempo: how fast every movement runs (x, 1 = as drawn by the action); amplitude:
    arm swing, gestures and idle sway (x); stoop: upper back rounded forward (degrees,
    negative: chest out); lean: pelvis tilted forward (degrees); stance: feet apart, as
    extra hip abduction of each leg (degrees). The default is the neutral style."""

    tempo: float = 1.0
    amplitude: float = 1.0
    stoop: float = 0.0
    lean: float = 0.0
    stance: float = 0.0

    def __post_init__(self) -> None:
        if not (self.tempo > 0 and self.amplitude > 0):
            raise ValueError(f"tempo and amplitude must be positive, got {self}")


def sample_style(seed: int) -> MotionStyle:
    """A random person's movement style, uniform within the ranges above."""
    rng = np.random.default_rng(seed)
    return MotionStyle(*(float(rng.uniform(*r)) for r in (
        TEMPO_RANGE, AMPLITUDE_RANGE, STOOP_RANGE_DEG, LEAN_RANGE_DEG, STANCE_RANGE_DEG)))
