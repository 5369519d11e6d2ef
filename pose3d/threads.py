"""How many CPU threads torch uses, on a CPU that other work shares.

OpenMP's parallel regions wait for their slowest thread, so a pool of N threads needs N
cores at once: beside one CPU-bound process, 2 threads on 2 cores ran 8x slower than 1
(docs/performance.md, "Threads on a shared CPU"). So a process starts with its share of the
cores (`default_threads`), and a training or evaluation loop asks a `ThreadGovernor` once
per step, which gives up a thread while other processes hold a core and takes it back when
they stop.

The user's choice wins and is never adapted: OMP_NUM_THREADS, or an explicit count (a
command's `--threads`, the trainer's `run.threads`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

# Set beside OMP_NUM_THREADS by a pose3d launcher (the demo's torchrun) that chose the count
# for its children: such a value is a share, not the user's choice, and stays adaptive.
LAUNCHER_ENV = "POSE3D_LAUNCHER_OMP_NUM_THREADS"
# Another process holding more than this much of a core claims it (OpenMP pays for a
# partly taken core as for a whole one); a claimed core is given back when the others'
# load falls below the lower threshold: the gap between the two keeps the count from
# flapping.
CLAIM_ABOVE = 0.5
RELEASE_BELOW = 0.25
INTERVAL_S = 2.0  # the governor reads the load at most this often


def available_cores() -> int:
    """The CPUs this process may run on (its affinity), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def user_threads(explicit: int | None = None, env: Mapping[str, str] = os.environ
                 ) -> int | None:
    """The thread count the user fixed: `explicit` (> 0; 0 or None means auto), else a
    positive OMP_NUM_THREADS that no pose3d launcher set; None when neither."""
    if explicit:
        return int(explicit)
    value = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # OpenMP allows "4,2"
    if not value.isdigit() or int(value) < 1 or value == env.get(LAUNCHER_ENV):
        return None
    return int(value)


def processes_sharing(env: Mapping[str, str] = os.environ) -> int:
    """How many processes of this job share the cores: torchrun's workers on this node, or
    pytest-xdist's workers."""
    for key in ("LOCAL_WORLD_SIZE", "PYTEST_XDIST_WORKER_COUNT"):
        value = env.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def default_threads(explicit: int | None = None, env: Mapping[str, str] = os.environ) -> int:
    """The user's count (`user_threads`), else this process's share of the available
    cores; at least 1."""
    fixed = user_threads(explicit, env)
    if fixed is not None:
        return fixed
    return max(1, available_cores() // processes_sharing(env))


def apply_threads(explicit: int | None = None) -> int:
    """Set torch's thread count to `default_threads(explicit)`; returns it. Every entry
    point calls it before any work."""
    n = default_threads(explicit)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def fix_threads(n: int) -> None:
    """A command's `--threads n`: as if the user had set OMP_NUM_THREADS=n, for this process
    (fixed, never adapted) and every process it starts."""
    os.environ["OMP_NUM_THREADS"] = str(int(n))
    os.environ.pop(LAUNCHER_ENV, None)
    apply_threads()


def launcher_env(nproc: int) -> dict[str, str]:
    """Environment for `nproc` worker processes started together (torchrun): each its
    share of the cores, set before OpenMP starts, and marked as the launcher's so that the
    workers still adapt it. Empty when the user fixed OMP_NUM_THREADS (they inherit it)."""
    if user_threads() is not None:
        return {}
    share = str(max(1, available_cores() // max(1, nproc)))
    return {"OMP_NUM_THREADS": share, LAUNCHER_ENV: share}


def pin_one_thread(worker_id: int = 0) -> None:
    """A DataLoader worker's `worker_init_fn`: one thread each, as the workers decode beside
    the trainer's threads (torch's DataLoader sets the same; this keeps it explicit)."""
    torch.set_num_threads(1)


# ---- the governor ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CpuSample:
    """One reading: busy and total jiffies of our CPUs (/proc/stat) and this process's CPU
    seconds (all its threads)."""

    busy: int
    total: int
    own_s: float


def read_proc_stat(cpus: set[int], path: str | Path = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) jiffies summed over the `cpus` lines of /proc/stat; None when it cannot
    be read (not Linux, no /proc) or names none of them."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    found = False
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        fields = [int(x) for x in rest.split()[:8]]
        fields += [0] * (8 - len(fields))
        idle = fields[3] + fields[4]
        busy += sum(fields) - idle
        total += sum(fields)
        found = True
    return (busy, total) if found else None


def own_cpu_s() -> float:
    """This process's CPU seconds so far, user + system, all threads."""
    t = os.times()
    return t.user + t.system


def others_load(before: CpuSample, after: CpuSample, cpus: int,
                hz: float = os.sysconf("SC_CLK_TCK")) -> float:
    """Cores that other processes kept busy between two readings on our `cpus` CPUs: the
    busy time of those CPUs less our own, over the elapsed time; in [0, cpus]. Our own
    DataLoader workers count as others: they take cores from our threads too."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    others = (after.busy - before.busy) - (after.own_s - before.own_s) * hz
    return min(float(cpus), max(0.0, others * cpus / total))


def decide(current: int, others: float, cores: int, ceiling: int) -> int:
    """The thread count for the next interval, given the cores others used (`others_load`):
    the cores they hold (each more than CLAIM_ABOVE of one) are taken away from `cores`,
    a held core is given back only below RELEASE_BELOW; clamped to [1, ceiling]."""
    def threads(threshold: float) -> int:
        held = max(0, math.ceil(others - threshold))
        return min(max(cores - held, 1), ceiling)

    most, fewest = threads(CLAIM_ABOVE), threads(RELEASE_BELOW)  # fewest <= most
    if current > most:
        return most
    if current < fewest:
        return fewest
    return current


class ThreadGovernor:
    """Adapts torch's thread count to the load of other processes; `step()` once per
    training or evaluation step (it acts at most every INTERVAL_S). Fixed (step() changes
    nothing) when the user fixed the count, on a GPU, or where /proc/stat is unreadable."""

    def __init__(self, ceiling: int, enabled: bool, *, stat_path: str | Path = "/proc/stat",
                 clock: Callable[[], float] = time.monotonic,
                 own_time: Callable[[], float] = own_cpu_s,
                 set_threads: Callable[[int], None] = torch.set_num_threads) -> None:
        self.ceiling, self.stat_path, self.clock = ceiling, stat_path, clock
        self.own_time, self.set_threads = own_time, set_threads
        self.cpus = _affinity()
        self.cores = len(self.cpus)
        self.threads = ceiling
        self.last_at = clock()
        self.last = self._sample() if enabled else None
        self.enabled = self.last is not None

    @classmethod
    def for_run(cls, explicit: int | None, device: torch.device | str) -> ThreadGovernor:
        """The governor of a run on `device` with the user's `explicit` count (None or 0:
        auto); sets the starting count."""
        ceiling = apply_threads(explicit)
        auto = user_threads(explicit) is None and torch.device(device).type == "cpu"
        return cls(ceiling, auto)

    def _sample(self) -> CpuSample | None:
        stat = read_proc_stat(self.cpus, self.stat_path)
        return None if stat is None else CpuSample(*stat, self.own_time())

    def step(self) -> int:
        """Reconsider the count when INTERVAL_S has passed; returns the count in use."""
        if not self.enabled or self.clock() - self.last_at < INTERVAL_S:
            return self.threads
        now = self._sample()
        self.last_at = self.clock()
        if now is None:
            return self.threads
        others = others_load(self.last, now, self.cores)
        self.last = now
        chosen = decide(self.threads, others, self.cores, self.ceiling)
        if chosen != self.threads:
            self.set_threads(chosen)
            self.threads = chosen
        return self.threads


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))
