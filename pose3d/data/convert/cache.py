"""The resume cache of a conversion: one finished unit's encoded samples in a file, read
back by a later run instead of decoding the unit again.

A cache file is data only, never pickled: a zip archive (stored, not compressed: the
samples are JPEGs already) with `header.json` = {format, version, key, samples} and one
member per sample field, `NNNNNN/<field>`. A file whose header is not ours, of another
version or of another key is ignored with a message and converted again; nothing in it
runs. The key (its digest is in the file name) covers the options that shape the samples,
each source file's size and modification time, and the converter's code, so a source fixed
after a failed run (or a pose3d update in between) means converting again, not reusing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

FORMAT = "pose3d-convert-cache"
VERSION = 1
SUFFIX = ".samples.zip"
HEADER = "header.json"


def source_stamps(paths: Sequence[Path | None]) -> list[list]:
    """[path, size in bytes, mtime in ns] per existing source file (Nones skipped)."""
    stamps = []
    for path in paths:
        if path is not None:
            stat = os.stat(path)
            stamps.append([str(path), stat.st_size, stat.st_mtime_ns])
    return stamps


@dataclass(frozen=True)
class CacheEntry:
    """Where one unit's samples are cached. `stem` names the unit (its files share it
    whatever the key); `key` is the JSON text of everything the samples depend on."""

    folder: Path
    stem: str
    key: str

    @property
    def path(self) -> Path:
        digest = hashlib.sha1(self.key.encode()).hexdigest()[:12]
        return self.folder / f"{self.stem}.{digest}{SUFFIX}"

    def stale(self) -> list[Path]:
        """Files of the same unit under another key (or an older format): left by a run
        with other options or other source files; useless to this run."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir()
                      if p.name.startswith(f"{self.stem}.") and p != self.path
                      and (p.name.endswith(SUFFIX) or p.suffix in (".pkl", ".partial")))


@functools.cache
def code_stamp(*modules: ModuleType) -> str:
    """A digest of the modules' source files: the code that shapes the samples."""
    digest = hashlib.sha1()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def make_entry(folder: Path, stem: str, options: object, sources: Sequence[Path | None],
               code: Sequence[ModuleType] = ()) -> CacheEntry:
    """The cache entry of a unit whose samples depend on `options` (JSON-able), on the
    files `sources` and on the code of `code`'s modules."""
    key = json.dumps({"options": options, "sources": source_stamps(sources),
                      "code": code_stamp(*code)}, sort_keys=True)
    return CacheEntry(Path(folder), stem, key)


def check(entry: CacheEntry, count: int) -> str | None:
    """None when `entry.path` holds `count` samples written under this key by this format;
    else why it cannot be used (a missing file is "absent")."""
    if not entry.path.is_file():
        return "absent"
    try:
        with zipfile.ZipFile(entry.path) as archive:
            header = json.loads(archive.read(HEADER))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        return f"not a {FORMAT} file ({type(exc).__name__})"
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return f"not a {FORMAT} file"
    if header.get("version") != VERSION:
        return f"written by {FORMAT} version {header.get('version')}, this is {VERSION}"
    if header.get("key") != entry.key:
        return "written for other options or source files"
    if not isinstance(header.get("samples"), list) or len(header["samples"]) != count:
        return f"holds {len(header.get('samples') or [])} samples, the unit has {count}"
    return None


def read(entry: CacheEntry) -> Iterator[dict | None]:
    """The cached samples in order (None: a tuple the converter skipped). Call check()
    first."""
    with zipfile.ZipFile(entry.path) as archive:
        header = json.loads(archive.read(HEADER))
        for i, fields in enumerate(header["samples"]):
            if fields is None:
                yield None
                continue
            sample = {}
            for name, kind in fields.items():
                data = archive.read(f"{i:06d}/{name}")
                sample[name] = data.decode() if kind == "str" else data
            yield sample


def write(entry: CacheEntry, samples: Iterable[dict | None]) -> Iterator[dict | None]:
    """Pass `samples` through while writing them to `entry.path`: to a `.partial` file
    first, renamed into place once the unit is complete (a later run then reads it)."""
    entry.folder.mkdir(parents=True, exist_ok=True)
    partial = entry.path.with_name(entry.path.name + ".partial")
    index = []
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for i, sample in enumerate(samples):
            if sample is None:
                index.append(None)
            else:
                index.append({k: "str" if isinstance(v, str) else "bytes"
                              for k, v in sample.items()})
                for name, value in sample.items():
                    archive.writestr(f"{i:06d}/{name}",
                                     value.encode() if isinstance(value, str) else value)
            yield sample
        archive.writestr(HEADER, json.dumps({"format": FORMAT, "version": VERSION,
                                             "key": entry.key, "samples": index}))
    os.replace(partial, entry.path)


def _difference(old: Path, entry: CacheEntry) -> str:
    """What changed since `old` (a stale file of the same unit) was written, in words."""
    try:
        with zipfile.ZipFile(old) as archive:
            then = json.loads(json.loads(archive.read(HEADER))["key"])
        now = json.loads(entry.key)
        sources_then = {s[0]: s[1:] for s in then["sources"]}
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return "cached by an older pose3d or another format"
    changed = [Path(path).name for path, *stamp in now["sources"]
               if sources_then.get(path) != stamp]
    if changed:
        return f"source file(s) changed since: {', '.join(changed)}"
    if then.get("code") != now["code"]:
        return "cached by another version of the converter"
    return "cached with other options or cameras"


def review(units: Sequence[tuple[str, CacheEntry, int]], where: Path,
           covers: str) -> list[str]:
    """Before a run: which units' cached samples (in the cache folder `where`) it reuses
    (label, entry, sample count), which it converts again and why; removes the stale files
    of those units (other keys, older formats, a killed run's `.partial`). `covers` says
    what the key holds: the reuse line repeats it, since what it omits is reused
    unnoticed. Returns the lines to show the user."""
    reused, lines = [], []
    for label, entry, count in units:
        reason = check(entry, count)
        if reason is None:
            reused.append(label)
            continue
        stale = entry.stale()
        if reason != "absent":
            lines.append(f"cache: ignoring {entry.path}: {reason}; converting {label} again")
        elif any(p.name.endswith(SUFFIX) or p.suffix == ".pkl" for p in stale):
            why = _difference(next(p for p in stale if not p.name.endswith(".partial")),
                              entry)
            lines.append(f"cache: {label}: {why}; converting it again")
        for path in stale:
            path.unlink(missing_ok=True)
    if reused:
        shown = ", ".join(reused[:6]) + (f" and {len(reused) - 6} more" if len(reused) > 6
                                          else "")
        lines.insert(0, f"cache: reusing {len(reused)} finished unit(s) from {where} "
                        f"(same {covers}): {shown}")
    return lines
