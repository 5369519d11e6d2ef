"""Conversions whose workers block, run by tests/test_convert_safety.py in a subprocess:
a test's SIGINT then finds the conversion converting, never finished (no race with a
conversion quicker than the signal). The worker processes import this module by name, so
the subprocess needs tests/ on PYTHONPATH."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Printed on stdout by a worker once it holds a unit: stderr stays the command's own.
STARTED = "convert_hooks: a worker is converting"


def blocking_produce(payload: object) -> Iterator[dict | None]:
    """A producer that never yields a sample."""
    print(STARTED, flush=True)
    while True:
        time.sleep(60)
    yield None  # unreachable: makes this a generator, as producers are


def run_cli(argv: list[str]) -> int:
    """`pose3d convert ARGV` (the official release) with every sequence's worker blocked."""
    from pose3d import cli
    from pose3d.data.convert import h36m_official

    h36m_official.produce_samples = blocking_produce
    return cli.main(argv)


def run_writer(out: str, units: int = 64, payload_bytes: int = 8192) -> int:
    """write_dataset with 2 blocked workers and `units` tasks of `payload_bytes` each (64 x
    8 KB: more than a pipe holds, so the task queue's feeder thread is still sending when
    Ctrl-C comes); KeyboardInterrupt -> one line and 130, as the CLI does."""
    from pose3d.data.convert.writer import ConversionUnit, write_dataset

    tasks = [ConversionUnit("labeled", 1, bytes(payload_bytes)) for _ in range(units)]
    try:
        write_dataset(Path(out), tasks, blocking_produce, workers=2, progress=False)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
