"""Which command wrote an output folder: `pose3d demo` and `pose3d eval` leave a marker file
(`.pose3d-demo`, `.pose3d-eval`) in the folder they write, and write into an existing folder
only when it carries their own marker. A folder holding anything else (a user's report.md, a
folder of someone's runs) is refused in one line before any work, never overwritten.

A folder an earlier pose3d wrote has no marker: `touch FOLDER/.pose3d-COMMAND` adopts it.

Imports nothing from pose3d, so any layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def marker(command: str) -> str:
    """The marker's file name for `command` (e.g. "eval" -> ".pose3d-eval")."""
    return f".pose3d-{command}"


def check_ours(folder: str | os.PathLike, command: str, what: str = "--out") -> None:
    """FileExistsError (one line) unless `folder` is absent, empty, or carries `command`'s
    marker. Creates nothing."""
    folder = Path(folder)
    if not folder.is_dir():
        return  # absent; a file in the way is check_writable's to report
    entries = sorted(p.name for p in folder.iterdir())
    if not entries or marker(command) in entries:
        return
    raise FileExistsError(f"{what} {folder} holds files pose3d {command} did not write "
                          f"({entries[0]}{' ...' if len(entries) > 1 else ''}; no "
                          f"{marker(command)} marker), and it would overwrite them: move them "
                          f"away or choose another --out")


def claim(folder: str | os.PathLike, command: str) -> Path:
    """Create `folder` (and its parents) and mark it as written by `command`; call after
    check_ours, before writing anything else into it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / marker(command)).exists():  # a rerun leaves it as it was
        (folder / marker(command)).touch()
    return folder
