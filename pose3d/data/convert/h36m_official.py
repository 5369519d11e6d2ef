"""Human3.6M's official release (CDF poses, mp4 videos, ground_truth_bb boxes) -> pose3d
shards with the paper's splits (the files are described in h36m_release).

One unit of work per sequence (a subject's take of an action, all its cameras). Everything
is checked before the first frame is decoded: each subject's folders, each CDF, each video
(it opens and its first frame decodes), metadata.xml against the published calibration.
The release's known defects are handled and listed in the summary's notes and the
manifest's `defects`:

- a video with more or fewer frames than its CDF: the sequence keeps the common prefix;
- S11 Directions on camera 54138969 is corrupt in the release: that view is stored missing
  (any other unreadable video is an error naming it);
- S9's damaged sequences (Greeting-2, SittingDown-2, Waiting-1, whose 3D does not match the
  videos) stay out of evaluation unless asked, as in the learnable-triangulation layout;
- actions spelled differently between subjects (Photo / TakingPhoto, WalkDog / WalkingDog)
  get one name;
- a camera without its ground_truth_bb file is cropped around its projected joints.

The videos are distorted; each crop is undistorted through its camera's published
distortion (pose3d.data.convert.crop), so the stored cameras have zero distortion.

A finished sequence's samples are kept in a cache folder (default: beside --out, named
`<out>.h36m-cache`; pose3d.data.convert.cache), so an interrupted run, started again with
the same options and unchanged source files, reads them back instead of decoding its videos
again, and says so; the run's cache files (and the folders they leave empty) are removed
once the shards are written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose3d.data import schema as schema_code
from pose3d.data.convert import cache as sample_cache
from pose3d.data.convert import crop as crop_code
from pose3d.data.convert import h36m_release as release_code
from pose3d.data.convert.crop import crop_view, scale_box, undistort_box
from pose3d.data.convert.h36m import (
    DAMAGED_ACTIONS,
    EVAL_FRAME_STEP,
    LABELS_FILE,
    SPLITS,
)
from pose3d.data.convert.h36m_metadata import Metadata, check_cameras, read_metadata
from pose3d.data.convert.h36m_release import (
    BOXES_DIR,
    POSES_DIR,
    BoxFile,
    Take,
    VideoFrames,
    box_path,
    is_release_root,
    list_sequences,
    poses_dir,
    probe_video,
    read_poses,
    split_prefix,
    video_path,
)
from pose3d.data.convert.writer import ConversionSummary, ConversionUnit, write_dataset
from pose3d.data.schema import encode_for_role
from pose3d.geometry import CAMERA_NAMES, Camera, h36m_cameras, square_about_centre, square_box

# (subject, action, camera) whose video the release ships corrupt.
CORRUPT_VIDEOS: tuple[tuple[str, str, str], ...] = (("S11", "Directions", "54138969"),)
# Size differences (px) still read as the calibrated frame (1000 x 1000 vs 1000 x 1002).
SIZE_SLACK_PX = 2
# The code that shapes a sequence's samples: samples cached by other code are stale.
_SAMPLE_CODE = (sys.modules[__name__], crop_code, release_code, schema_code)


@dataclass
class H36MReleaseOptions:
    """What to convert and how. `cameras`: camera ids (None: all four). `box_margin`: the
    crop margin around projected joints where no ground_truth_bb box exists, a fraction of
    the joints' extent per side. `metadata`: the release's metadata.xml (numbers the takes
    as the release does and cross-checks the cameras). `cache`: the resume folder."""

    image_size: int = 256
    splits: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SPLITS))
    frame_step: int = 1  # labeled and unlabeled roles
    eval_frame_step: int = EVAL_FRAME_STEP
    cameras: Sequence[str] | None = None
    bbox_scale: float = 1.0
    box_margin: float = 0.2
    with_damaged_actions: bool = False
    max_frames: int | None = None  # per role, for quick trial runs
    metadata: Path | None = None
    cache: Path | None = None


@dataclass
class _Unit:
    """One sequence for one worker (picklable)."""

    role: str
    take: Take
    frames: list[int]
    poses: np.ndarray  # [len(frames), 17, 3] world mm
    videos: list[Path | None]  # per camera; None: the view is missing throughout
    boxes: list[Path | None]  # per camera; None: crop around the projected joints
    cameras: list[Camera]  # full-frame, at the video's size
    image_size: int
    bbox_scale: float
    box_margin: float
    cache: sample_cache.CacheEntry


@dataclass
class ReleasePlan:
    """What convert_h36m_release will write: its units, the notes for the summary, and the
    cameras per subject for the manifest."""

    units: list[ConversionUnit]
    notes: list[str]
    rigs: dict[str, list[dict]]
    camera_names: list[str]
    cache: Path


# ------------------------------------------------------------------ planning


def _camera_names(cameras: Sequence[str] | None) -> list[str]:
    """Camera ids from ids or indices 0-3 (None: all four)."""
    if cameras is None:
        return list(CAMERA_NAMES)
    names = [CAMERA_NAMES[int(c)] if str(c).isdigit() and int(c) < len(CAMERA_NAMES)
             else str(c) for c in cameras]
    unknown = [c for c in names if c not in CAMERA_NAMES]
    if unknown or not names:
        raise ValueError(f"camera(s) {unknown} are not Human3.6M's (cameras: "
                         f"{', '.join(CAMERA_NAMES)}, or indices 0-3)")
    return names


def _at_video_size(camera: Camera, size: tuple[int, int], notes: list[str],
                   where: str) -> Camera:
    """The calibrated camera for a video of `size` (w, h): as is when it is the calibrated
    frame (within SIZE_SLACK_PX), else K scaled (a re-encoded, resized copy)."""
    w, h = size
    cw, ch = camera.image_size
    if abs(w - cw) <= SIZE_SLACK_PX and abs(h - ch) <= SIZE_SLACK_PX:
        return Camera(camera.K, camera.R, camera.t, camera.dist, (w, h), camera.name)
    scale = np.diag([w / cw, h / ch, 1.0])
    notes.append(f"{where}: videos are {w}x{h} px, calibrated {cw}x{ch}: intrinsics scaled")
    return Camera(scale @ camera.K, camera.R, camera.t, camera.dist, (w, h), camera.name)


def _views(root: Path, take: Take, rig: list[Camera], n_poses: int, notes: list[str]
           ) -> tuple[list[Path | None], list[Camera], int]:
    """Each camera's video (None where the release's copy is known to be corrupt), its
    camera at the video's size, and the frames all readable videos and the CDF share."""
    videos, cameras, counts = [], [], {}
    bound = {c.name for c in rig}  # the views whose length bounds the sequence
    for camera in rig:
        path = video_path(root, take.subject, take.prefix, camera.name)
        known_corrupt = (take.subject, take.action, camera.name) in CORRUPT_VIDEOS
        try:
            if not path.is_file():
                raise FileNotFoundError(f"Human3.6M video not found: {path}")
            count, size = probe_video(path)
        except (FileNotFoundError, ValueError) as exc:
            if not known_corrupt:
                raise
            notes.append(f"{take.subject} {take.prefix} camera {camera.name}: the release's "
                         f"video is corrupt or absent (known defect), view stored missing "
                         f"({exc})")
            videos.append(None)
            cameras.append(camera)
            continue
        videos.append(path)
        cameras.append(_at_video_size(camera, size, notes,
                                      f"{take.subject} camera {camera.name}"))
        counts[camera.name] = count
        if known_corrupt:  # a partly readable copy must not shorten the other views
            bound.discard(camera.name)
    if not counts:
        raise ValueError(f"{take.subject} {take.prefix}: no camera's video is readable")
    common = min([n_poses, *(counts[c] for c in bound if c in counts)])
    if any(n != n_poses for n in counts.values()):
        videos_text = ", ".join(f"{c} {n}" for c, n in counts.items())
        notes.append(f"{take.subject} {take.prefix}: CDF has {n_poses} frames, videos "
                     f"{videos_text}: kept the first {common}")
    return videos, cameras, common


def _boxes(root: Path, take: Take, rig: list[Camera]) -> list[Path | None]:
    """Each camera's ground_truth_bb file (None where absent), each opened once so that an
    unreadable one stops the run now, not hours into it."""
    paths = [box_path(root, take.subject, take.prefix, c.name) for c in rig]
    paths = [p if p.is_file() else None for p in paths]
    for path in paths:
        if path is not None:
            BoxFile(path).close()
    return paths


def _cache_entry(cache: Path, role: str, take: Take, frames: list[int],
                 cameras: list[Camera], options: H36MReleaseOptions,
                 sources: list[Path | None]) -> sample_cache.CacheEntry:
    """Where this sequence's samples are kept, keyed by everything that shapes them (the
    options and each source file's size and mtime): a run with other options, or after a
    source file changed, never reads stale samples."""
    key = [role, frames, [c.name for c in cameras], [np.round(c.K, 6).tolist() for c in cameras],
           options.image_size, options.bbox_scale, options.box_margin,
           [np.asarray(c.dist).tolist() for c in cameras]]  # the crops are undistorted
    return sample_cache.make_entry(cache / take.subject, f"{take.name}.{role}", key, sources,
                                   code=_SAMPLE_CODE)


def _subject_takes(root: Path, subject: str, role: str, metadata: Metadata | None,
                   notes: list[str]) -> list[Take]:
    if not (root / subject).is_dir():
        raise FileNotFoundError(
            f"Human3.6M subject {subject} (role {role}) not found: {root / subject} (unpack "
            f"the release's {subject} archives: Poses_D3_Positions_{subject}, "
            f"Videos_{subject}, optionally Segments_mat_gt_bb_{subject})")
    mapping = metadata.mapping.get(subject) if metadata is not None else None
    takes = list_sequences(root, subject, mapping)
    renamed = sorted({f"{split_prefix(t.prefix)[0]} as {t.action}" for t in takes
                      if split_prefix(t.prefix)[0] != t.action})
    if renamed:
        notes.append(f"{subject}: action names read {', '.join(renamed)}")
    if not (root / subject / BOXES_DIR).is_dir():
        notes.append(f"{subject}: no {BOXES_DIR.as_posix()} folder: boxes from the projected "
                     "joints")
    return takes


def _plan_take(root: Path, role: str, take: Take, rig: list[Camera],
               options: H36MReleaseOptions, cache: Path, budget: int | None,
               notes: list[str]) -> _Unit | None:
    """One sequence's unit, None when it has nothing to convert (damaged and left out of
    eval, or the role's --max-frames budget spent)."""
    damaged = take.name in DAMAGED_ACTIONS.get(take.subject, ())
    if role == "eval" and damaged and not options.with_damaged_actions:
        notes.append(f"{take.subject} {take.prefix} ({take.name}): damaged, left out of eval "
                     "(--with-damaged-actions keeps it)")
        return None
    cdf = poses_dir(root, take.subject) / f"{take.prefix}.cdf"
    poses = read_poses(cdf)
    videos, cameras, count = _views(root, take, rig, len(poses), notes)
    step = options.eval_frame_step if role == "eval" else options.frame_step
    frames = list(range(0, count, step))[:budget]
    if not frames:
        return None
    boxes = _boxes(root, take, rig)
    return _Unit(role, take, frames, poses[frames], videos, boxes, cameras,
                 options.image_size, options.bbox_scale, options.box_margin,
                 _cache_entry(cache, role, take, frames, cameras, options,
                              [cdf, *videos, *boxes]))


def plan_release(root: str | Path, options: H36MReleaseOptions | None = None,
                 out: str | Path | None = None) -> ReleasePlan:
    """Check the release under `root` and plan its conversion; raises FileNotFoundError /
    ValueError naming the file at fault. Reads the CDFs and opens every video once."""
    root = Path(root)
    options = options or H36MReleaseOptions()
    for name in ("image_size", "frame_step", "eval_frame_step"):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)}")
    names = _camera_names(options.cameras)
    metadata = read_metadata(Path(options.metadata)) if options.metadata else None
    cache = Path(options.cache) if options.cache else \
        Path(f"{Path(out) if out is not None else root / 'converted'}.h36m-cache")
    notes: list[str] = []
    if metadata is None:
        notes.append("no metadata.xml: takes numbered by file name (no number or the lower "
                     "one is subaction 1) and cameras not cross-checked")
    units, rigs = [], {}
    for role, subjects in options.splits.items():
        budget = options.max_frames
        for subject in subjects:
            by_name = {c.name: c for c in h36m_cameras(subject)}
            rig = [by_name[n] for n in names]
            if metadata is not None:
                check_cameras(metadata, Path(options.metadata), subject, rig)
            rigs[subject] = [c.to_dict() for c in rig]
            for take in _subject_takes(root, subject, role, metadata, notes):
                unit = _plan_take(root, role, take, rig, options, cache, budget, notes)
                if unit is not None:
                    units.append(ConversionUnit(role, len(unit.frames), unit))
                    budget = None if budget is None else budget - len(unit.frames)
    notes = list(dict.fromkeys(notes))  # one line per subject and camera, not per take
    return ReleasePlan(units, notes, rigs, names, cache)


# ------------------------------------------------------------------ one sequence


def _view(unit: _Unit, video: VideoFrames | None, boxes: BoxFile | None, camera: Camera,
          i: int) -> tuple[np.ndarray | None, Camera | None, list | None]:
    """The crop of one view of tuple `i`, its camera and source box (Nones: missing)."""
    frame = unit.frames[i]
    image = video.read(frame) if video is not None else None
    if image is None:
        return None, None, None
    h, w = image.shape[:2]
    full = Camera(camera.K, camera.R, camera.t, camera.dist, (w, h), camera.name)
    box = boxes.box(frame) if boxes is not None else None
    # the crop is undistorted (crop_view): its box is in the full frame's pinhole pixels
    box = square_about_centre(undistort_box(box, full)) if box is not None else \
        square_box(full.project(unit.poses[i], distort=False), unit.box_margin)
    box = scale_box(box, unit.bbox_scale)
    crop, cropped = crop_view(image, full, box, unit.image_size)
    return crop, cropped, [round(v, 2) for v in box]


def _samples(unit: _Unit) -> Iterator[dict | None]:
    videos = [VideoFrames(p) if p is not None else None for p in unit.videos]
    boxes = [BoxFile(p) if p is not None else None for p in unit.boxes]
    try:
        for i, frame in enumerate(unit.frames):
            views = [_view(unit, v, b, c, i) for v, b, c in zip(videos, boxes, unit.cameras)]
            images, cameras, source_boxes = (list(x) for x in zip(*views))
            if all(img is None for img in images):
                yield None
                continue
            meta = {"subject": unit.take.subject, "action": unit.take.name, "frame": frame,
                    "clip": 0, "role": unit.role, "dataset": "h36m",
                    "source_file": unit.take.prefix, "source_boxes": source_boxes,
                    "views": [c.name for c in unit.cameras]}
            # an unlabeled tuple's 3D is withheld: kept only to score the P-GT
            yield encode_for_role(images, cameras, unit.poses[i], meta)
    finally:
        for item in videos + boxes:
            if item is not None:
                item.close()


def produce_samples(unit: _Unit) -> Iterator[dict | None]:
    """The sequence's encoded samples (runs in a worker): read back from the cache when an
    earlier run finished this sequence with the same options and source files, else
    decoded and cached as they go."""
    if sample_cache.check(unit.cache, len(unit.frames)) is None:
        yield from sample_cache.read(unit.cache)
        return
    yield from sample_cache.write(unit.cache, _samples(unit))


def convert_h36m_release(root: str | Path, out: str | Path,
                         options: H36MReleaseOptions | None = None, *,
                         plan: ReleasePlan | None = None, workers: int = 0,
                         samples_per_shard: int = 1000, shuffle_buffer: int = 0,
                         progress: bool = True) -> ConversionSummary:
    """Convert the official release under `root` into shards under `out` (ROLE-NNNNNN.tar per
    role and manifest.json). `plan`: plan_release's result, when the caller checked the input
    first. Raises FileNotFoundError / ValueError naming what is missing, before `out` is
    touched."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"Human3.6M root folder not found: {root}")
    options = options or H36MReleaseOptions()
    plan = plan or plan_release(root, options, out)
    if not plan.units:
        raise ValueError(f"{root}: no frame to convert for splits {options.splits}")
    for line in sample_cache.review([(f"{u.payload.take.subject} {u.payload.take.name} "
                                      f"({u.role})", u.payload.cache, u.size)
                                     for u in plan.units], plan.cache):
        print(line, file=sys.stderr)
    summary = write_dataset(
        out, plan.units, produce_samples, samples_per_shard=samples_per_shard,
        shuffle_buffer=shuffle_buffer, workers=workers, progress=progress,
        dataset="h36m", layout="release", splits={r: list(s) for r, s in options.splits.items()},
        camera_names=plan.camera_names, cameras=plan.rigs, frame_step=options.frame_step,
        eval_frame_step=options.eval_frame_step, defects=plan.notes)
    summary.notes = list(plan.notes)
    _remove_cache(plan)
    return summary


def _remove_cache(plan: ReleasePlan) -> None:
    """Delete the run's cached sequences, then the folders they leave empty (only those: a
    --cache folder may hold other things)."""
    for unit in plan.units:
        unit.payload.cache.path.unlink(missing_ok=True)
    for folder in sorted({u.payload.cache.folder for u in plan.units}) + [plan.cache]:
        try:
            folder.rmdir()
        except OSError:  # not empty or absent: keep it
            pass


LAYOUTS = ("auto", "release", "learnable-triangulation")


def detect_layout(root: str | Path) -> str:
    """'release' (S*/MyPoseFeatures/D3_Positions) or 'learnable-triangulation' (its labels
    file or processed/ folder); FileNotFoundError naming `root` when it holds neither."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Human3.6M root folder not found: {root}")
    if is_release_root(root):
        return "release"
    if (root / "processed").is_dir() or any((root / d / LABELS_FILE).is_file()
                                            for d in ("extra", ".")):
        return "learnable-triangulation"
    raise FileNotFoundError(
        f"{root} holds no Human3.6M: expected the official release (S1/{POSES_DIR.as_posix()}"
        f"/*.cdf, S1/Videos/*.mp4) or learnable-triangulation's layout (extra/{LABELS_FILE}, "
        "processed/); pass the folder the archives were unpacked into")
