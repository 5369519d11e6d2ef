"""Timing and memory measurement shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    median_s: float
    min_s: float
    repeats: int
    peak_extra_bytes: int | None  # CUDA only: peak allocation above the starting point


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device, warmup: int = 2,
            repeats: int = 5, max_seconds: float = 10.0) -> Timing:
    """Median wall time of `fn()` over `repeats` runs (fewer if `max_seconds` runs out)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times: list[float] = []
    budget_end = time.perf_counter() + max_seconds
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
        if time.perf_counter() > budget_end:
            break
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    return Timing(statistics.median(times), min(times), len(times), peak)


def copy_bandwidth(device: torch.device, nbytes: int = 256 << 20) -> float:
    """Measured device-to-device copy bandwidth in bytes/s (read + write counted)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = measure(lambda: dst.copy_(src), device, warmup=2, repeats=10)
    return 2 * nbytes / t.median_s


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table, so benchmark output pastes straight into docs/performance.md."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])
