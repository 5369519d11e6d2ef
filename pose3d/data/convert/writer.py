"""Run a dataset conversion: units of work -> encoded samples -> per-role shards + manifest.

A converter splits its dataset into units (a chunk of frames, a video sequence) and gives a
module-level `produce(payload)` that yields encoded samples (pose3d.data.schema dicts), or
None for a tuple it had to skip (no usable view). With workers > 1 the units run in spawned
processes that stream samples back through a bounded queue, so memory stays flat however
large a unit is; the main process alone writes shards (ShardSetWriter). With several
workers, the order of samples in the shards depends on timing; their content does not.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm

from pose3d.data.schema import META_FILE
from pose3d.data.shards import ShardSetWriter

Producer = Callable[[Any], Iterable[dict | None]]


@dataclass
class ConversionUnit:
    """`size` tuples of one role; `payload` is what `produce` gets (picklable)."""

    role: str
    size: int
    payload: Any


@dataclass
class ConversionSummary:
    """Per role: samples written, views stored as missing in them, tuples skipped because
    no view was usable; the manifest; and notes (what the converter handled or left out,
    and why), printed after the counts."""

    written: dict[str, int] = field(default_factory=dict)
    missing_views: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{role}: {n} samples, {self.missing_views[role]} views missing, "
                f"{self.skipped[role]} tuples without any view skipped"
                for role, n in self.written.items()] + [f"note: {n}" for n in self.notes]


_DONE = "done"


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # an exception type that cannot cross processes: keep its message
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _worker(produce: Producer, tasks: mp.Queue, results: mp.Queue) -> None:
    cv2.setNumThreads(1)  # one process per core already
    while (item := tasks.get()) is not None:
        index, unit = item
        try:
            for sample in produce(unit.payload):
                results.put((index, sample))
        except BaseException as exc:  # sent back and re-raised in the main process
            results.put((index, _picklable(exc)))
            return
        results.put((index, _DONE))


def _start_ignoring_sigint(procs: list) -> None:
    """Start the workers with SIGINT ignored (a spawned interpreter keeps an ignored SIGINT
    from its start on): Ctrl-C reaches the whole process group, and the main process alone
    handles it and terminates them, instead of every worker printing a traceback."""
    if threading.current_thread() is not threading.main_thread():
        for p in procs:
            p.start()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for p in procs:
            p.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def _parallel(units: list[ConversionUnit], produce: Producer,
              workers: int) -> Iterator[tuple[str, dict | None]]:
    ctx = mp.get_context("spawn")  # no fork after torch / OpenCV threads have started
    tasks, results = ctx.Queue(), ctx.Queue(maxsize=32 * workers)
    for item in enumerate(units):
        tasks.put(item)
    procs = [ctx.Process(target=_worker, args=(produce, tasks, results), daemon=True)
             for _ in range(workers)]
    for _ in procs:
        tasks.put(None)
    _start_ignoring_sigint(procs)
    try:
        remaining = len(units)
        while remaining:
            try:
                index, message = results.get(timeout=5.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("conversion workers died without a result (out of "
                                       "memory?); try fewer --workers") from None
                continue
            if isinstance(message, BaseException):
                raise message
            if isinstance(message, str) and message == _DONE:
                remaining -= 1
                continue
            yield units[index].role, message
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5.0)
        # Tasks nobody will read may still wait in the feeder thread for room in the pipe:
        # without this, the interpreter's exit waits for that thread forever (Ctrl-C).
        tasks.cancel_join_thread()
        for q in (tasks, results):
            q.close()


def _serial(units: list[ConversionUnit], produce: Producer
            ) -> Iterator[tuple[str, dict | None]]:
    for unit in units:
        for sample in produce(unit.payload):
            yield unit.role, sample


def write_dataset(out: Path, units: list[ConversionUnit], produce: Producer, *,
                  samples_per_shard: int = 1000, shuffle_buffer: int = 0, workers: int = 0,
                  progress: bool = True, **manifest_extra) -> ConversionSummary:
    """Produce every unit's samples and write them under `out`; returns the summary.
    `manifest_extra` goes into manifest.json (dataset name, splits, cameras ...)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    summary = ConversionSummary(**{name: {u.role: 0 for u in units}
                                   for name in ("written", "missing_views", "skipped")})
    stream = _parallel(units, produce, workers) if workers > 1 else _serial(units, produce)
    total = sum(u.size for u in units)
    with closing(stream), \
            ShardSetWriter(out, samples_per_shard, shuffle_buffer=shuffle_buffer) as writer, \
            tqdm(total=total, unit="tuple", disable=not progress, desc="convert") as bar:
        for role, sample in stream:
            bar.update(1)
            if sample is None:
                summary.skipped[role] += 1
                continue
            meta = json.loads(sample[META_FILE])
            if meta["role"] != role:  # the shards' file names and the counts follow it
                raise ValueError(f"{sample['__key__']}: meta role {meta['role']!r} is not its "
                                 f"unit's, {role}")
            writer.write(sample)
            summary.written[role] += 1
            summary.missing_views[role] += meta["valid"].count(False)
        if not any(summary.written.values()):
            raise ValueError("nothing to write: no tuple with a usable view was found")
        summary.manifest = writer.close(**manifest_extra)
    return summary
