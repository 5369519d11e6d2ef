"""One run at a time in a run folder (issue 32): a run holds an exclusive lock on
`run.out_dir` while it writes there, so a second `pose3d train` into the same folder is
refused in one line naming the holder's PID instead of deleting the first one's temporary
checkpoint and interleaving its metrics.jsonl.

The lock is `fcntl.flock` on LOCK_FILE inside the folder. Under torchrun only global rank 0
takes it (the ranks of one launch share the folder). The kernel drops it when its process
ends, however it ends, so a worker group that torchrun restarts takes it again; a child
forked while it is held (a DataLoader worker) closes its copy at once, since an orphaned
worker still holding it would lock out the restarted group.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".run.lock"

_held: set[int] = set()  # the lock descriptors this process holds


def _close_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunFolderInUse(FileExistsError):
    """Another live run holds the run folder's lock."""


@contextlib.contextmanager
def hold_run_folder(folder: str | os.PathLike, take: bool = True) -> Iterator[None]:
    """Hold the lock on `folder` (created if missing) while the block runs; RunFolderInUse
    (one line, naming the holder's PID) when another process holds it. take=False (a rank
    other than 0) holds nothing."""
    if not take:
        yield
        return
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunFolderInUse(f"run folder {folder} is in use by another run (PID "
                                 f"{holder}): wait for it to end, or choose another "
                                 f"run.out_dir")
        _held.add(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        _held.discard(fd)
        os.close(fd)  # releases the lock
        if created:
            _remove_if_only_the_lock(folder)


def in_use(folder: str | os.PathLike) -> bool:
    """Whether another live process holds `folder`'s lock now (nothing is created)."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)  # releases it at once if it was taken


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on `fd` without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove_if_only_the_lock(folder: Path) -> None:
    """A run refused before it wrote anything leaves no folder behind (the lock made it)."""
    try:
        if [p.name for p in folder.iterdir()] == [LOCK_FILE]:
            (folder / LOCK_FILE).unlink()
            folder.rmdir()
    except OSError:
        pass
