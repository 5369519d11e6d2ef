"""Smooth time signals that drive the procedural joint angles: low-frequency noise,
periodic bumps for gait cycles, and episodes (rest, rise, hold, fall) for actions that
come and go."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Range = tuple[float, float]


def smootherstep(x: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero first and second derivatives at both ends (x clipped to [0, 1])."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def smooth_noise(num_frames: int, fps: float, rng: np.random.Generator, amplitude: float,
                 max_hz: float = 0.4, terms: int = 3) -> np.ndarray:
    """A sum of slow sinusoids with random frequencies and phases, |value| <= amplitude: [T]."""
    t = np.arange(num_frames) / fps
    freqs = rng.uniform(0.05, max_hz, terms)
    phases = rng.uniform(0, 2 * np.pi, terms)
    weights = rng.uniform(0.5, 1.0, terms)
    waves = np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])
    return amplitude * (weights @ waves) / weights.sum()


def periodic_bump(phase: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A Gaussian bump of height 1 at `centre` on the unit circle of phases (period 1)."""
    d = (np.asarray(phase) - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


@dataclass(frozen=True)
class Episodes:
    """level: [T] in [0, 1] (0 at rest, 1 while the action is held); cycle: [T] index of
    the episode each frame belongs to, which changes only while the level is 0, so
    per-episode parameters can be switched without a jump."""

    level: np.ndarray
    cycle: np.ndarray

    @property
    def num_cycles(self) -> int:
        return int(self.cycle.max()) + 1


def episodes(num_frames: int, fps: float, rng: np.random.Generator, rest: Range,
             rise: Range, hold: Range, fall: Range) -> Episodes:
    """Repeated rest -> rise -> hold -> fall cycles, each duration (seconds) drawn uniformly
    from its range per cycle; the clip starts at a random moment of the first cycle."""
    span = num_frames / fps
    bounds, start, offset = [], 0.0, None
    while offset is None or start < offset + span:
        durations = [rng.uniform(*r) for r in (rest, rise, hold, fall)]
        if offset is None:
            offset = rng.uniform(0.0, sum(durations))
        bounds.append(start + np.cumsum([0.0] + durations))
        start = bounds[-1][-1]
    t = offset + np.arange(num_frames) / fps
    edges = np.array([b[0] for b in bounds])
    cycle = np.searchsorted(edges, t, side="right") - 1
    b = np.array(bounds)[cycle]  # [T, 5]: rest, rise, hold, fall starts, and the end
    up = smootherstep((t - b[:, 1]) / (b[:, 2] - b[:, 1]))
    down = smootherstep((t - b[:, 3]) / (b[:, 4] - b[:, 3]))
    return Episodes(up - down, cycle)
