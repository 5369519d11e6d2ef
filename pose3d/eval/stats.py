"""Confidence intervals for results over seeds, and paired differences between arms.

Runs of one experiment that differ only in the seed are independent draws of the same
noise (data order); the 95% interval of their mean is Student's t interval. Two arms run with
the same seeds are compared seed by seed (paired): the interval of the mean difference is
narrower than the two intervals suggest, because the noise they share cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and two-sided Student t interval of the mean of `values` (one per seed).

    Returns {"mean", "lo", "hi", "half_width", "sd", "n"}; with one value the interval is
    undefined (lo = hi = NaN, sd NaN). Raises ValueError for no values, NaN, or a
    confidence outside (0, 1).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("t_interval needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError(f"t_interval needs finite values, got {x.tolist()}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n, mean = x.size, float(x.mean())
    if n == 1:
        nan = float("nan")
        return {"mean": mean, "lo": nan, "hi": nan, "half_width": nan, "sd": nan, "n": 1}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "half_width": half, "sd": sd,
            "n": n}


def paired_difference(a: Sequence[float], b: Sequence[float],
                      confidence: float = 0.95) -> dict:
    """a - b seed by seed (a[k] and b[k] share seed k; a single b is a constant, e.g. Base),
    with the t interval of its mean and the per-seed values under "values"."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if b.size not in (1, a.size):
        raise ValueError(f"paired_difference needs as many values in b as in a (or one), got "
                         f"{a.size} and {b.size}")
    diff = a - b
    return {**t_interval(diff, confidence), "values": diff.tolist()}


def excludes_zero(interval: dict) -> bool:
    """Whether a t interval lies wholly on one side of 0 (False when undefined)."""
    return bool(interval["lo"] > 0 or interval["hi"] < 0)


def format_interval(interval: dict, digits: int = 2) -> str:
    """'88.04 [87.12, 88.96]', or just the mean when the interval is undefined."""
    mean = f"{interval['mean']:.{digits}f}"
    if math.isnan(interval["lo"]):
        return mean
    return f"{mean} [{interval['lo']:.{digits}f}, {interval['hi']:.{digits}f}]"
