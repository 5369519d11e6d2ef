"""The resume cache of a conversion: one finished unit's encoded samples in a file, read
back by a later run instead of decoding the unit again.

A cache file is data only, never pickled: a zip archive (stored, not compressed: the
samples are JPEGs already) with `header.json` = {format, version, key, samples} and one
member per sample field, `NNNNNN/<field>`. A file whose header is not ours, of another
version or of another key, or that is damaged or forged in any part (a member too large
for its field, judged before it is read; a bad CRC; a field of the wrong type or shape; a
name that is not plain; a sample that is not the unit's: cached_sample), is ignored with
one line, removed and converted again; nothing in it runs. The key (its digest is in the
file name) covers the options that shape the samples (the cameras among them), each source
file's size and modification time, and the converter's code, so a source fixed after a
failed run (or a pose3d update in between) means converting again, not reusing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import reprlib
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pose3d.data.convert.cached_sample import check_sample, member_limit

FORMAT = "pose3d-convert-cache"
VERSION = 1
SUFFIX = ".samples.zip"
HEADER = "header.json"
HEADER_BYTES = 1024  # what header.json may weigh per sample (and for 64 more)


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


class BadCache(ValueError):
    """A cache file that cannot be used; the message says why, in a few words."""


def check(entry: CacheEntry, expected: Sequence[Mapping]) -> str | None:
    """None when `entry.path` holds, under this key and format, one sound sample per item
    of `expected` (what each sample's meta.json must hold, "role" and "image_size"
    included); else why it cannot be used (a missing file is "absent"). Reads the whole
    file: every member's size (from the zip directory, before its bytes), CRC, type and
    shape, and every name in it, are checked."""
    if not entry.path.is_file():
        return "absent"
    try:
        for _ in _checked_samples(entry, expected):
            pass
    except BadCache as exc:
        return str(exc)
    return None


def read(entry: CacheEntry, expected: Sequence[Mapping]) -> Iterator[dict | None]:
    """The cached samples in order (None: a tuple the converter skipped), each checked as
    check() does; ValueError naming the file when one is not sound (it changed since
    check() passed it: a rerun replaces it)."""
    try:
        yield from _checked_samples(entry, expected)
    except BadCache as exc:
        raise ValueError(f"{entry.path}: {exc}; it changed during the run (the same command "
                         "again converts its unit anew)") from None


def _checked_samples(entry: CacheEntry, expected: Sequence[Mapping]
                     ) -> Iterator[dict | None]:
    """check() and read(): the samples of `entry`, BadCache at the first fault."""
    with _as_bad_cache(f"not a {FORMAT} file"):
        archive = zipfile.ZipFile(entry.path)
    with archive:
        with _as_bad_cache(f"not a {FORMAT} file"):
            index = _index(archive, entry, len(expected))
        for i, (fields, want) in enumerate(zip(index, expected)):
            with _as_bad_cache(f"sample {i} is damaged"):
                sample = None if fields is None else _sample(archive, i, fields, want)
            yield sample


@contextlib.contextmanager
def _as_bad_cache(what: str) -> Iterator[None]:
    """Any error inside as BadCache(`what` and the error, on one line): zipfile, json and
    numpy fail on a forged or damaged file in many ways, and each means the same."""
    try:
        yield
    except BadCache:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise BadCache(f"{what} ({type(exc).__name__}: {text})") from None


def _index(archive: zipfile.ZipFile, entry: CacheEntry, count: int) -> list:
    """The header's per-sample field lists, its format, version, key and size checked."""
    packed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise BadCache(f"{packed[0]} is compressed (a {FORMAT} stores its members)")
    size, limit = archive.getinfo(HEADER).file_size, HEADER_BYTES * (count + 64)
    if size > limit:
        raise BadCache(f"its {HEADER} is {size} bytes, at most {limit} for {count} samples")
    header = json.loads(archive.read(HEADER))
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadCache(f"not a {FORMAT} file")
    if header.get("version") != VERSION:
        raise BadCache(f"written by {FORMAT} version {reprlib.repr(header.get('version'))}, "
                       f"this is {VERSION}")
    if header.get("key") != entry.key:
        raise BadCache("written for other options or source files")
    samples = header.get("samples")
    if not isinstance(samples, list):
        raise BadCache(f"its samples are {type(samples).__name__}, not a list")
    if len(samples) != count:
        raise BadCache(f"holds {len(samples)} samples, the unit has {count}")
    return samples


def _sample(archive: zipfile.ZipFile, i: int, fields: object, want: Mapping) -> dict:
    """Sample i read back: each member's size bounded before its bytes are read, then the
    sample checked against the schema and `want` (pose3d.data.convert.cached_sample)."""
    if not isinstance(fields, dict):
        raise BadCache(f"sample {i}: its entry is {type(fields).__name__}, not a dict of fields")
    sample = {}
    try:
        for name, kind in fields.items():
            limit = member_limit(name, kind, want["image_size"])
            try:
                info = archive.getinfo(f"{i:06d}/{name}")
            except KeyError:
                raise ValueError(f"its {name} is missing") from None
            if info.file_size > limit:
                raise ValueError(f"its {name} is {info.file_size} bytes, at most {limit} "
                                 "expected")
            data = archive.read(info)
            sample[name] = data.decode() if kind == "str" else data
        check_sample(sample, want)
    except ValueError as exc:
        raise BadCache(f"sample {i}: {exc}") from None
    return sample


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


def review(units: Sequence[tuple[str, CacheEntry, Sequence[Mapping]]], where: Path,
           covers: str) -> list[str]:
    """Before a run: which units' cached samples (in the cache folder `where`) it reuses
    (label, entry, what each sample's meta must hold: see check()), which it converts
    again and why; removes the files of those units that it cannot use (a bad file under
    this key, other keys, older formats, a killed run's `.partial`), so that the run
    replaces them. `covers` says what the key holds: the reuse line repeats it, since what
    it omits is reused unnoticed. Returns the lines to show the user."""
    reused, lines = [], []
    for label, entry, expected in units:
        reason = check(entry, expected)
        if reason is None:
            reused.append(label)
            continue
        stale = entry.stale()
        if reason != "absent":
            lines.append(f"cache: ignoring {entry.path}: {reason}; converting {label} again")
            entry.path.unlink(missing_ok=True)
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
