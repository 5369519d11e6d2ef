"""soft_argmax_3d: the eager reference against the fused op, forward and forward+backward."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from pose3d.bench.timing import copy_bandwidth, format_table, measure
from pose3d.ops.soft_argmax import soft_argmax_3d, soft_argmax_3d_reference

B, J = 32, 17
FULL_SIZES = (64, 96)
QUICK_SIZES = (16, 24)
QUICK_B = 2
DTYPES = (torch.float32, torch.bfloat16)
IMPLS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "eager": soft_argmax_3d_reference,
    "fused": soft_argmax_3d,
}
MiB = 1 << 20


class _Profile:
    """Peak memory of one call above the memory at its start, and the bytes autograd saves
    for the backward (the logits excluded), on CUDA (allocator) or Linux CPU (resident set)."""

    def __init__(self, device: torch.device, logits: torch.Tensor):
        self.device, self.logits = device, logits
        self.saved: list[torch.Tensor] = []

    def run(self, fn: Callable[[], object]) -> tuple[int | None, int]:
        hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        with hooks:
            peak = self._peak(fn)
        skip = {self.logits.untyped_storage().data_ptr()}
        saved = 0
        for t in self.saved:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in skip:
                skip.add(ptr)
                saved += t.untyped_storage().nbytes()
        self.saved.clear()
        return peak, saved

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.saved.append(t)
        return t

    def _peak(self, fn: Callable[[], object]) -> int | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            fn()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - base
        status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
        try:
            before = _proc_bytes(status, "VmRSS:")
            clear.write_text("5")  # resets VmHWM, the resident peak, to the current size
            fn()
            return _proc_bytes(status, "VmHWM:") - before
        except (OSError, StopIteration):
            fn()
            return None


def _proc_bytes(status: Path, field: str) -> int:
    line = next(x for x in status.read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) * 1024


def _passes(fn, x: torch.Tensor, grad: torch.Tensor) -> dict[str, Callable[[], object]]:
    def forward():
        with torch.no_grad():
            return fn(x)

    def forward_backward():
        return torch.autograd.grad(fn(x), x, grad)

    return {"fwd": forward, "fwd+bwd": forward_backward}


def _rows(size: int, batch: int, dtype: torch.dtype, device: torch.device,
          copy_bps: float) -> list[list[object]]:
    shape = (batch, J, size, size, size)
    x = torch.randn(shape, device=device, dtype=torch.float32).to(dtype).requires_grad_()
    grad = torch.randn(batch, J, 3, device=device)
    logit_bytes = x.numel() * x.element_size()
    # minimum traffic: forward reads the logits; backward reads them again, writes the grad
    traffic = {"fwd": logit_bytes, "fwd+bwd": 3 * logit_bytes}
    # On CPU the profiled call is the warm-up, and few runs: the eager 96^3 forward+backward
    # takes seconds on two cores.
    runs = dict(warmup=0, repeats=3, max_seconds=1.0) if device.type == "cpu" else {}
    profile = _Profile(device, x)
    times: dict[tuple[str, str], float] = {}
    rows = []
    for pass_name in ("fwd", "fwd+bwd"):
        for impl, fn in IMPLS.items():
            call = _passes(fn, x, grad)[pass_name]
            peak, saved = profile.run(call)
            t = measure(call, device, **runs)
            times[impl, pass_name] = t.median_s
            gbps = traffic[pass_name] / t.median_s
            speedup = times["eager", pass_name] / t.median_s
            rows.append([f"{size}^3", str(dtype).removeprefix("torch."), pass_name, impl,
                         f"{t.median_s * 1e3:.1f}", f"{gbps / 1e9:.1f}",
                         f"{100 * gbps / copy_bps:.0f}%",
                         "n/a" if peak is None else f"{peak / MiB:.0f}",
                         f"{saved / MiB:.1f}", f"{speedup:.1f}x"])
    return rows


def run(args: argparse.Namespace, device: torch.device) -> str:
    """Markdown table: time, achieved GB/s, share of copy bandwidth, memory, speed-up."""
    sizes, batch = (QUICK_SIZES, QUICK_B) if args.quick else (FULL_SIZES, B)
    copy_bps = copy_bandwidth(device)
    rows = []
    for size in sizes:
        for dtype in DTYPES:
            rows += _rows(size, batch, dtype, device, copy_bps)
    headers = ["volume", "dtype", "pass", "impl", "time ms", "GB/s", "of copy BW",
               "peak extra MiB", "saved for bwd MiB", "speed-up"]
    return "\n".join([
        f"## soft_argmax_3d, B={batch}, J={J} on {device.type} "
        f"(copy bandwidth {copy_bps / 1e9:.1f} GB/s)",
        "",
        "GB/s counts the minimum traffic: one read of the logits forward; forward+backward "
        "adds a second read and the write of the gradient. Peak extra: CUDA allocator peak, "
        "or resident-set peak on CPU, above the start of one call (the returned gradient "
        "included). Saved for bwd: tensors autograd keeps, the logits excluded. Speed-up: "
        "eager time / this time.",
        "",
        format_table(headers, rows),
    ])
