"""What a profiled region allocated inside one op: for tests that an op makes no copy."""

from __future__ import annotations

import torch.profiler


def allocated_inside(prof: torch.profiler.profile, op: str) -> int:
    """Bytes allocated (not net of frees, so a temporary copy counts) by the calls of `op`
    (e.g. "pose3d::soft_argmax_3d_forward") and everything they called, in a CPU profile
    taken with profile_memory=True."""

    def inside(event) -> bool:
        while event is not None:
            if event.name == op:
                return True
            event = event.cpu_parent
        return False

    return sum(max(e.self_cpu_memory_usage, 0) for e in prof.events() if inside(e))
