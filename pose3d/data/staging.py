"""Writing a dataset folder so that nothing is lost on failure.

`pose3d synth` and `pose3d convert` write into a temporary folder beside `--out`
(`.NAME.partial-HOST-PID-XXXX`) and swap it in only when it is complete (a manifest) and
non-empty. Until then an existing dataset in `--out` stays as it was: a bad input root, a
failure mid-run, Ctrl-C or a full disk leave it intact and the partial folder is removed.
A run that was killed (SIGKILL, power loss) cannot remove its partial folder: the next run
for the same `--out` does, once the process named in the folder's name is no longer running
on this machine (a live run's folder, or another machine's, is left alone). The swap
is two renames in the same parent folder; `--overwrite` replaces `--out` as a whole (no stale
shards of the old dataset survive), and refuses a folder that holds files no pose3d dataset
writes (a mistyped `--out` must not delete someone's work).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pose3d.data.shards import MANIFEST
from pose3d.json_input import load_json

# What a pose3d dataset folder holds: shards, the manifest (and its temporary file), the
# preview picture. Anything else in --out stops --overwrite.
DATASET_FILES = ("*.tar", MANIFEST, f"{MANIFEST}.tmp", "preview.png")


def _is_dataset_file(path: Path) -> bool:
    return path.is_file() and any(path.match(pattern) for pattern in DATASET_FILES)


def _writable_ancestor(path: Path) -> Path:
    """The nearest folder at or above `path` that exists."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> None:
    """PermissionError (one line) unless `folder` is, or can be created as, a folder this
    process may write in; FileExistsError when it is a file. Creates nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{what} {folder} exists and is not a folder")
    existing = _writable_ancestor(folder)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {folder} is not writable: cannot write in {existing}")


def check_output(out: str | os.PathLike, overwrite: bool) -> None:
    """Whether a dataset may be written to `out` (call before any work): FileExistsError when
    `out` is a file, or holds a dataset and not `overwrite`, or holds anything else;
    PermissionError when its parent folder cannot be written (the swap needs that)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        raise FileExistsError(f"{out} is not empty ({entries[0].name} ...); pass --overwrite "
                              f"to replace the dataset there, or choose another --out")
    foreign = [p for p in entries if not _is_dataset_file(p)]
    if foreign:
        raise FileExistsError(f"--overwrite replaces {out} as a whole, but it holds "
                              f"{foreign[0].name}, which is not part of a pose3d dataset; "
                              f"move it away or choose another --out")
    parent = _writable_ancestor(out.absolute().parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write a dataset to {out}: {parent} is not writable")


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_orphans(out: str | os.PathLike) -> list[Path]:
    """Remove the partial folders beside `out` left by killed runs on this machine (their
    process is gone); returns them. A live run's folder, and folders of other machines or
    other names, are kept."""
    out = Path(out).absolute()
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.partial-([0-9a-f]{{8}})-(\d+)-")
    removed = []
    for path in sorted(out.parent.glob(f".{glob.escape(out.name)}.partial-*")):
        found = pattern.match(path.name)
        if not found or found.group(1) != _host() or not path.is_dir() \
                or _running(int(found.group(2))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _samples(folder: Path) -> int:
    try:
        manifest = load_json((folder / MANIFEST).read_bytes(), str(folder / MANIFEST))
    except (OSError, ValueError):
        return 0
    return sum(role.get("samples", 0) for role in manifest.get("roles", {}).values())


def _swap(new: Path, out: Path) -> None:
    """Put `new` where `out` is; the old folder goes only once the new one is in place."""
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    try:
        os.rename(new, out)
    except BaseException:  # the old folder back in place, whole, before anything else
        os.rename(old / out.name, out)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dataset(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside `out` to write a dataset into; swapped in for `out` when the
    block ends without an error and the folder holds a manifest listing at least one sample
    (else ValueError). On any error the temporary folder is removed and `out` is untouched.
    `out` is checked first (check_output); partial folders of killed runs beside it are
    removed (remove_orphans), each named on stderr."""
    out = Path(out)
    check_output(out, overwrite)
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    for orphan in remove_orphans(out):
        print(f"removed {orphan}, the unfinished output of a run that was killed",
              file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{_host()}-{os.getpid()}-",
                                dir=out.absolute().parent))
    try:
        yield tmp
        if _samples(tmp) == 0:
            raise ValueError(f"nothing was written for {out} (no manifest or no samples)")
        _swap(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
