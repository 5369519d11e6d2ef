"""WebDataset pipelines that turn shards of multi-view tuples into training batches.

Train: the shard list is shuffled by (seed, epoch, pass) identically on every rank and
repeated without end; the stream is split by rank (as wds.split_by_node does, with the rank
given explicitly) and then by DataLoader worker (wds.split_by_worker), so within one pass
over the shards every (rank, worker) slot reads different shards. Each worker reads,
shuffles (raw bytes, cheap), decodes, optionally augments and batches, and stops after its
share of `batches_per_epoch` (the role of wds `with_epoch`): every rank yields exactly
`batches_per_epoch` batches whatever the shard sizes, so DDP never waits on a rank that ran
out of data.

Eval: every sample exactly once across ranks and workers: with at least as many shards as
(rank, worker) slots, slot s reads shards s, s + S, ...; with fewer shards every slot reads
every shard and keeps sample j of shard i when (i + j) mod S == s.

Bad input never crashes or hangs a run: an unreadable or truncated tar, a corrupt JPEG, a
sample without its cameras or a view it claims is valid, non-finite cameras / joints3d /
pgt, images of another size than the dataset's (`image_size`, by default the first sample's)
is skipped with a CorruptSampleWarning naming the shard and key, and counted
(`loader.skipped`, the first few named in `loader.skip_examples`). A training stream in
which no shard can be read raises instead of spinning.

The batch (CPU tensors; B tuples, V views, S = image size):
    images [B, V, 3, S, S] float32 (ImageNet-normalised RGB; zeros for missing views)
    K [B, V, 3, 3], R [B, V, 3, 3], t [B, V, 3] float32 (cameras after crop and resize)
    valid [B, V] bool; joints3d, pgt [B, 17, 3] float32 world mm (zeros where absent),
    has_joints3d, has_pgt [B] bool; key, subject, action: list[str]
    raw: list[dict] (eval loaders with keep_raw only): the samples as read from the tars
With decode_on_device (training loaders) the workers do not decode: `images` is replaced by
    jpegs: list (B) of lists (V) of uint8 tensors (a view's JPEG bytes; None where not valid)
    image_size: int, the side S in px
and pose3d.data.device_decode.decode_batch turns them into `images` on the trainer's device.
"""

from __future__ import annotations

import itertools
import os
import random
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
import webdataset as wds
from webdataset.tariterators import tarfile_samples

from pose3d.data import schema
from pose3d.data.shards import load_manifest, resolve_shards
from pose3d.skeleton import NUM_JOINTS
from pose3d.threads import pin_one_thread

MAX_CONSECUTIVE_BAD = 1000  # a training stream with this many unusable samples in a row stops


class CorruptSampleWarning(UserWarning):
    """A shard or sample was skipped (the message names the shard and the key)."""


MAX_SKIP_EXAMPLES = 5  # skips named (shard and key) in loader.skip_examples and the logs


class _Skips:
    """Skipped samples by reason, in one process; `take()` hands over the counts since the
    last call (they travel to the main process inside batches), `take_examples()` the
    messages of the first MAX_SKIP_EXAMPLES. The first MAX_WARNINGS skips are each
    announced; later ones are only counted."""

    MAX_WARNINGS = 20

    def __init__(self) -> None:
        self.pending: Counter = Counter()
        self.examples: list[str] = []
        self.warned = 0

    def add(self, reason: str, message: str) -> None:
        self.pending[reason] += 1
        self.warned += 1
        if self.warned <= MAX_SKIP_EXAMPLES:
            self.examples.append(message[:300])
        if self.warned <= self.MAX_WARNINGS:
            if self.warned == self.MAX_WARNINGS:
                message += " (further skips in this process are counted, not shown)"
            warnings.warn(message, CorruptSampleWarning, stacklevel=2)

    def take(self) -> dict[str, int]:
        out, self.pending = dict(self.pending), Counter()
        return out

    def take_examples(self) -> list[str]:
        out, self.examples = self.examples, []
        return out


def _worker_info() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    rank, world_size = int(rank or 0), int(world_size or 1)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    return rank, world_size


# ---- reading ------------------------------------------------------------------------------

def _read_shard(url: str, skips: _Skips) -> Iterator[dict]:
    """Raw samples of one tar; an unreadable or truncated tar ends the shard early."""
    def handler(exn: Exception) -> bool:
        skips.add("tar", f"skipping the rest of shard {url}: {exn!r}"[:500])
        return True
    yield from tarfile_samples(iter([{"url": url}]), handler=handler)


class _AllShardsBad:
    """Raises when every shard of the list has come up empty in a row: in an endless stream
    that would otherwise spin without ever yielding."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls, self.empty = set(urls), set()

    def shard_done(self, url: str, samples: int) -> None:
        if samples:
            self.empty.clear()
            return
        self.empty.add(url)
        if self.empty >= self.urls:
            raise RuntimeError(f"none of the {len(self.urls)} shards yielded a sample (all "
                               f"unreadable or empty), e.g. {sorted(self.urls)[0]}")


class _TrainSource:
    """Endless shard stream shuffled by (seed, epoch, pass), the same on every rank; this
    slot's part of it (rank-major then worker, like split_by_node + split_by_worker).

    With several groups of shards (a fine-tuning's GT and P-GT), each group is such a
    stream and every sample comes from group g with probability (samples in g) / (samples
    in all): a run shorter than an epoch then sees the groups in their proportions from
    its first batch, where one stream of whole shards would read a few shards of one
    group only."""

    def __init__(self, groups: list[list[str]], seed: int, epoch: int, rank: int, world: int):
        self.groups, self.seed, self.epoch, self.rank, self.world = (groups, seed, epoch, rank,
                                                                     world)
        self.weights = [count_samples(g) for g in groups] if len(groups) > 1 else None

    def shards(self, urls: list[str], tag: str = "") -> Iterator[str]:
        def passes() -> Iterator[str]:
            for p in itertools.count():
                order = list(urls)
                random.Random(f"{self.seed}/{self.epoch}/{p}{tag}").shuffle(order)
                yield from order
        worker, workers = _worker_info()
        by_node = itertools.islice(passes(), self.rank, None, self.world)
        return itertools.islice(by_node, worker, None, workers)

    def _stream(self, urls: list[str], skips: _Skips, tag: str = "") -> Iterator[dict]:
        guard = _AllShardsBad(urls)
        for url in self.shards(urls, tag):
            count = 0
            for sample in _read_shard(url, skips):
                count += 1
                yield sample
            guard.shard_done(url, count)

    def samples(self, skips: _Skips) -> Iterator[dict]:
        if self.weights is None:
            yield from self._stream(self.groups[0], skips)
            return
        streams = [self._stream(g, skips, f"/group{i}") for i, g in enumerate(self.groups)]
        worker, _ = _worker_info()
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}/mix")
        while True:
            yield next(rng.choices(streams, weights=self.weights)[0])


class _EvalSource:
    """This slot's samples of a finite pass, every sample in exactly one slot."""

    def __init__(self, urls: list[str], rank: int, world: int):
        self.urls, self.rank, self.world = urls, rank, world

    def samples(self, skips: _Skips) -> Iterator[dict]:
        worker, workers = _worker_info()
        slots, slot = self.world * workers, self.rank + self.world * worker
        whole_shards = len(self.urls) >= slots
        for i, url in enumerate(self.urls):
            if whole_shards and i % slots != slot:
                continue
            for j, sample in enumerate(_read_shard(url, skips)):
                if whole_shards or (i + j) % slots == slot:
                    yield sample


# ---- decoding, augmentation, batching --------------------------------------------------------

def _augment(images: np.ndarray, K: np.ndarray, valid: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per valid view: zoom 0.9-1.1 and shift up to 6% about the centre (K updated to
    match) and brightness / contrast / saturation jitter of +-20%. No flips: a mirrored view
    would swap left and right against the cameras."""
    images, K = images.copy(), K.copy()
    size = images.shape[1]
    for v in np.flatnonzero(valid):
        s = rng.uniform(0.9, 1.1)
        tx, ty = (1 - s) * size / 2 + rng.uniform(-0.06, 0.06, 2) * size
        A = np.array([[s, 0, tx], [0, s, ty]], dtype=np.float64)
        img = cv2.warpAffine(images[v], A, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        K[v] = (np.vstack([A, [0, 0, 1]]) @ K[v]).astype(np.float32)
        img = img.astype(np.float32)
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.8, 1.2)  # saturation
        img = (img - img.mean()) * rng.uniform(0.8, 1.2) + img.mean()  # contrast
        images[v] = np.clip(img * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
    return images, K


def _recolour(images: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One new colouring per tuple, the same in each of its views (a person's clothes look
    alike from every camera): RGB channels permuted, hues rotated by up to half the wheel,
    and one tuple in five grey. A model that must tell people apart by shape, face and gait
    rather than by the colours of the few people it trained on (docs/design.md, "colour
    augmentation")."""
    images = images.copy()
    order, hue, grey = rng.permutation(3), int(rng.integers(-45, 46)), rng.random() < 0.2
    for v in np.flatnonzero(valid):
        img = np.ascontiguousarray(images[v][..., order])
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + hue) % 180  # OpenCV hue: 0-179
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if grey:
            img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        images[v] = img
    return images


def record(d: schema.DecodedSample) -> dict:
    """A decoded tuple in the form `collate` stacks (zeros + has_* False where absent)."""
    zeros = np.zeros((NUM_JOINTS, 3), np.float32)
    pixels = {"images": d.images} if d.jpegs is None else {
        "jpegs": d.jpegs, "image_size": int(d.meta["image_size"])}
    return {**pixels, "K": d.K, "R": d.R, "t": d.t, "valid": d.valid,
            "joints3d": d.joints3d if d.joints3d is not None else zeros,
            "has_joints3d": d.joints3d is not None,
            "pgt": d.pgt if d.pgt is not None else zeros, "has_pgt": d.pgt is not None,
            "key": d.key, "subject": str(d.meta["subject"]), "action": str(d.meta["action"])}


def _decode_stream(samples: Iterator[dict], skips: _Skips, augment_rng, endless: bool,
                   image_size: int | None = None, keep_raw: bool = False,
                   decode_images: bool = True, colour_rng=None) -> Iterator[dict]:
    """Records of the usable samples; the others are skipped and counted. Every record has
    images of `image_size` px (default: the first usable sample's): a batch never mixes
    sizes. keep_raw: each record also carries `raw`, the sample as read from its tar.
    decode_images=False: records carry the JPEG bytes (see the module docstring).
    augment_rng / colour_rng: given, each record is augmented (_augment) / recoloured
    (_recolour) with it."""
    bad_in_a_row = 0
    for sample in samples:
        try:
            rec = record(schema.decode_sample(sample, image_size, decode_images))
        except schema.SampleError as exc:
            skips.add("sample", f"skipping sample in {sample.get('__url__', '?')}: {exc}")
            bad_in_a_row += 1
            if endless and bad_in_a_row >= MAX_CONSECUTIVE_BAD:
                raise RuntimeError(f"{bad_in_a_row} unusable samples in a row (last: {exc}); "
                                   f"the shards look corrupt") from exc
            continue
        bad_in_a_row = 0
        image_size = _side(rec)
        if keep_raw:
            rec["raw"] = sample
        if augment_rng is not None:
            rec["images"], rec["K"] = _augment(rec["images"], rec["K"], rec["valid"],
                                               augment_rng)
        if colour_rng is not None:
            rec["images"] = _recolour(rec["images"], rec["valid"], colour_rng)
        yield rec


def _side(rec: dict) -> int:
    """A record's image side in px."""
    return rec["image_size"] if "jpegs" in rec else rec["images"].shape[1]


def _pad_views(rec: dict, views: int) -> dict:
    extra = views - len(rec["valid"])
    if extra == 0:
        return rec
    filler = schema.placeholder_camera(_side(rec))
    rec = dict(rec)
    if "jpegs" in rec:
        rec["jpegs"] = [*rec["jpegs"], *[None] * extra]
    else:
        rec["images"] = np.concatenate([rec["images"], np.zeros(
            (extra, *rec["images"].shape[1:]), np.uint8)])
    for name in ("K", "R", "t"):
        pad = np.repeat(getattr(filler, name)[None].astype(np.float32), extra, axis=0)
        rec[name] = np.concatenate([rec[name], pad])
    rec["valid"] = np.concatenate([rec["valid"], np.zeros(extra, bool)])
    return rec


def collate(records: list[dict], normalize: bool = True) -> dict:
    """Stack decoded tuples into a batch (see the module docstring). Tuples with fewer views
    are padded with invalid views; different image sizes are an error. normalize=False
    leaves images uint8 [B, V, 3, S, S] (4x less to move; normalise on the device with
    schema.normalize_images)."""
    sizes = {_side(r) for r in records}
    if len(sizes) > 1:
        raise ValueError(f"cannot batch tuples of different image sizes {sorted(sizes)}")
    views = max(len(r["valid"]) for r in records)
    records = [_pad_views(r, views) for r in records]
    if "jpegs" in records[0]:
        batch = {"jpegs": [[None if j is None else torch.frombuffer(bytearray(j), dtype=torch.uint8)
                            for j in r["jpegs"]] for r in records], "image_size": sizes.pop()}
    else:
        batch = {"images": _pixels(records, normalize)}
    for name in ("K", "R", "t", "joints3d", "pgt"):
        batch[name] = torch.from_numpy(np.stack([r[name] for r in records]).astype(np.float32))
    for name in ("valid", "has_joints3d", "has_pgt"):
        batch[name] = torch.from_numpy(np.array([r[name] for r in records], dtype=bool))
    for name in ("key", "subject", "action", "raw"):
        if name in records[0]:
            batch[name] = [r[name] for r in records]
    return batch


def _pixels(records: list[dict], normalize: bool) -> torch.Tensor:
    """The records' images as [B, V, 3, S, S], float32 normalised or uint8."""
    pixels = torch.from_numpy(np.stack([r["images"] for r in records]))  # [B,V,S,S,3] uint8
    pixels = pixels.permute(0, 1, 4, 2, 3)
    images = torch.empty(pixels.shape, dtype=torch.float32 if normalize else torch.uint8)
    images.copy_(pixels)  # converts and transposes in one pass: much faster than .float()
    return schema.normalize_images(images, inplace=True) if normalize else images


def _batches(records: Iterator[dict], batch_size: int, partial: bool, skips: _Skips,
             normalize: bool) -> Iterator[dict]:
    """Batches, each carrying the skip counts since the previous one under 'skipped'."""
    buf = []
    for rec in records:
        buf.append(rec)
        if len(buf) == batch_size:
            yield {**collate(buf, normalize), "skipped": skips.take(),
                   "skip_examples": skips.take_examples()}
            buf = []
    if buf and partial:
        yield {**collate(buf, normalize), "skipped": skips.take(),
               "skip_examples": skips.take_examples()}


class _Pipeline(torch.utils.data.IterableDataset):
    """What each DataLoader worker (or the main process) runs: source -> (shuffle) ->
    decode -> batch -> (this worker's share of the epoch), then a final empty batch that
    hands over the remaining skip counts."""

    def __init__(self, source, batch_size: int, *, shuffle_buffer: int = 0,
                 augment: bool = False, seed: int = 0, batches: int | None = None,
                 normalize: bool = True, image_size: int | None = None,
                 keep_raw: bool = False, decode_images: bool = True,
                 augment_colour: bool = False):
        super().__init__()
        self.augment_colour = augment_colour
        self.source, self.batch_size, self.shuffle_buffer = source, batch_size, shuffle_buffer
        self.augment, self.seed, self.batches = augment, seed, batches
        self.normalize, self.image_size, self.keep_raw = normalize, image_size, keep_raw
        self.decode_images = decode_images

    def __iter__(self) -> Iterator[dict]:
        skips = _Skips()
        worker, workers = _worker_info()
        rank = getattr(self.source, "rank", 0)
        stream_seed = f"{self.seed}/{getattr(self.source, 'epoch', 0)}/{rank}/{worker}"
        quota = None
        if self.batches is not None:
            quota = self.batches // workers + (worker < self.batches % workers)
        if quota != 0:
            samples = self.source.samples(skips)
            if self.shuffle_buffer > 1:
                samples = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer,
                                      rng=random.Random(stream_seed))(samples)
            aug_rng = np.random.default_rng(zlib.crc32(stream_seed.encode())) \
                if self.augment else None
            colour_rng = np.random.default_rng(zlib.crc32(f"colour/{stream_seed}".encode())) \
                if self.augment_colour else None
            records = _decode_stream(samples, skips, aug_rng, endless=quota is not None,
                                     image_size=self.image_size, keep_raw=self.keep_raw,
                                     decode_images=self.decode_images, colour_rng=colour_rng)
            batches = _batches(records, self.batch_size, partial=quota is None, skips=skips,
                               normalize=self.normalize)
            yield from itertools.islice(batches, quota)
        yield {"skipped": skips.take(), "skip_examples": skips.take_examples()}


class ShardLoader:
    """Iterable over batches (dicts); `skipped` counts samples/shards skipped so far by
    reason ('sample', 'tar'), `skip_examples` names the first few (shard, key, why); len()
    is the number of batches per epoch when fixed."""

    def __init__(self, dataset: _Pipeline, num_workers: int, pin_memory: bool,
                 num_batches: int | None):
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory
        self.num_batches = num_batches
        self.skipped: Counter = Counter()
        self.skip_examples: list[str] = []

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (like make_train_loader(..., epoch=epoch))."""
        if not hasattr(self.dataset.source, "epoch"):
            raise TypeError("only a training loader has epochs")
        self.dataset.source.epoch = int(epoch)

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an eval loader has no fixed number of batches")
        return self.num_batches

    def __iter__(self) -> Iterator[dict]:
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=None, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=False, worker_init_fn=pin_one_thread)
        for batch in loader:
            self.skipped.update(batch.pop("skipped"))
            room = MAX_SKIP_EXAMPLES - len(self.skip_examples)
            self.skip_examples.extend(batch.pop("skip_examples")[:max(room, 0)])
            if "images" in batch or "jpegs" in batch:
                yield batch


# ---- public constructors ---------------------------------------------------------------------

def count_samples(urls: Sequence[str]) -> int:
    """Samples in the shards, from the manifests of their folders (reads the tar headers
    of shards that no manifest lists)."""
    known: dict[str, int] = {}
    for folder in {os.path.dirname(os.path.abspath(u)) for u in urls}:
        try:
            manifest = load_manifest(folder)
        except FileNotFoundError:
            continue
        for role in manifest["roles"].values():
            for shard in role["shards"]:
                known[os.path.join(folder, shard["file"])] = shard["samples"]
    total = 0
    for url in urls:
        path = os.path.abspath(url)
        if path not in known:
            keys = {s["__key__"] for s in tarfile_samples(iter([{"url": url}]),
                                                          handler=lambda exn: True)}
            known[path] = len(keys)
        total += known[path]
    return total


def _check_batch_size(batch_size: int, num_workers: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")


def make_train_loader(shards: str | Sequence[str] | Sequence[Sequence[str]], batch_size: int,
                      *, num_workers: int = 0,
                      seed: int = 0, epoch: int = 0, batches_per_epoch: int | None = None,
                      rank: int | None = None, world_size: int | None = None,
                      augment: bool = False, shuffle_buffer: int = 100,
                      pin_memory: bool = False, normalize: bool = True,
                      image_size: int | None = None,
                      decode_on_device: bool = False,
                      augment_colour: bool = False) -> ShardLoader:
    """Training batches, exactly `batches_per_epoch` on every rank (default: one pass over
    the samples split over the ranks, rounded up). Shards and samples are reshuffled per
    (seed, epoch); rank / world_size default to torch.distributed's when initialised.
    normalize=False yields uint8 images (see collate). image_size: the side (px) every
    sample must have, others are skipped (default: the first sample's). `shards` may also
    be a list of groups, each a list of shard paths: the groups are mixed sample by sample
    in proportion to their sizes (see _TrainSource). decode_on_device: batches carry the
    JPEG bytes, for pose3d.data.device_decode.decode_batch (no augmentation then).
    augment_colour: each tuple recoloured (_recolour), independently of `augment`."""
    _check_batch_size(batch_size, num_workers)
    if decode_on_device and (augment or augment_colour):
        raise ValueError("decode_on_device needs augment=False: augmentation works on "
                         "decoded pixels")
    groups = [resolve_shards(g) for g in _groups(shards)]
    urls = [u for g in groups for u in g]
    rank, world_size = _resolve_rank(rank, world_size)
    if batches_per_epoch is None:
        per_rank = -(-count_samples(urls) // world_size)
        batches_per_epoch = max(1, -(-per_rank // batch_size))
    if batches_per_epoch < 1:
        raise ValueError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
    source = _TrainSource(groups, seed, epoch, rank, world_size)
    dataset = _Pipeline(source, batch_size, shuffle_buffer=shuffle_buffer, augment=augment,
                        seed=seed, batches=batches_per_epoch, normalize=normalize,
                        image_size=image_size, decode_images=not decode_on_device,
                        augment_colour=augment_colour)
    return ShardLoader(dataset, num_workers, pin_memory, batches_per_epoch)


def _groups(shards: str | Sequence[str] | Sequence[Sequence[str]]) -> list:
    """One group (the shards as given) or the list of groups."""
    is_group = [isinstance(g, (list, tuple)) for g in
                ([] if isinstance(shards, (str, os.PathLike)) else shards)]
    if is_group and all(is_group):
        return list(shards)
    if any(is_group):
        raise ValueError("shards: give paths/patterns, or a list of groups of them, not both")
    return [shards]


def make_eval_loader(shards: str | Sequence[str], batch_size: int, *, num_workers: int = 0,
                     rank: int | None = None, world_size: int | None = None,
                     pin_memory: bool = False, normalize: bool = True,
                     image_size: int | None = None, keep_raw: bool = False) -> ShardLoader:
    """Every sample exactly once across ranks (and workers), in shard order within a slot;
    the last batch may be smaller and ranks may get different numbers of batches.
    image_size as for make_train_loader. keep_raw: batches also carry `raw`, each tuple's
    sample as read from its tar (file name -> bytes), for stages that copy samples into new
    shards (P-GT)."""
    _check_batch_size(batch_size, num_workers)
    urls = resolve_shards(shards)
    rank, world_size = _resolve_rank(rank, world_size)
    dataset = _Pipeline(_EvalSource(urls, rank, world_size), batch_size, normalize=normalize,
                        image_size=image_size, keep_raw=keep_raw)
    return ShardLoader(dataset, num_workers, pin_memory, None)


def iterate_raw_samples(shards: str | Sequence[str]) -> Iterator[dict]:
    """Every raw sample (file name -> bytes, and `__key__`) of the shards in order, in this
    process; an unreadable or truncated tar ends that shard early, with a warning."""
    skips = _Skips()
    for url in resolve_shards(shards):
        yield from _read_shard(url, skips)


def iterate_samples(shards: str | Sequence[str], *, on_error: Callable[[str], None] | None
                    = None) -> Iterator[schema.DecodedSample]:
    """Every decodable sample of the shards in order, in this process (for previews,
    converters and checks); unusable ones are reported to `on_error` (default: warn)."""
    skips = _Skips()
    for url in resolve_shards(shards):
        for sample in _read_shard(url, skips):
            try:
                yield schema.decode_sample(sample)
            except schema.SampleError as exc:
                if on_error is not None:
                    on_error(str(exc))
                else:
                    warnings.warn(f"{url}: {exc}", CorruptSampleWarning, stacklevel=2)
