"""Human3.6M (learnable-triangulation layout) -> pose3d shards with the paper's splits.

On disk (the layout learnable-triangulation-pytorch's preprocessing produces):

    ROOT/extra/human36m-multiview-labels-GTbboxes.npy   (or ROOT/ or --labels PATH)
    ROOT/processed/<subject>/<action>/imageSequence[-undistorted]/<camera>/img_%06d.jpg

The labels file is a pickled dict: `subject_names`, `camera_names`, `action_names`,
`cameras` (structured [n_subjects, n_cameras]: R [3,3], t [3,1] mm, K [3,3], dist [5]
k1 k2 p1 p2 k3; world -> camera as `x_cam = R X + t`) and `table` (structured, one row per
frame: subject_idx, action_idx, frame_idx (0-based; the image is img_{frame_idx+1}),
keypoints [17,3] world mm in learnable-triangulation's joint order, bbox_by_camera_tlbr
[n_cameras,4] as top, left, bottom, right pixels; all zeros where the view is missing).
Images under `imageSequence-undistorted` were undistorted, so their cameras get dist = 0;
crops of the distorted `imageSequence` images are undistorted through the labels' dist
(pose3d.data.convert.crop), so every stored camera has zero distortion.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pose3d.data.convert.crop import crop_view, scale_box, undistort_box
from pose3d.data.convert.safe_npy import load_object_npy
from pose3d.data.convert.writer import ConversionSummary, ConversionUnit, write_dataset
from pose3d.data.schema import check_name, encode_for_role
from pose3d.geometry import Camera, square_about_centre
from pose3d.skeleton.mappings import LEARNABLE_TRIANGULATION_TO_H36M

LABELS_FILE = "human36m-multiview-labels-GTbboxes.npy"
LABEL_KEYS = ("subject_names", "camera_names", "action_names", "cameras", "table")
TABLE_FIELDS = ("subject_idx", "action_idx", "frame_idx", "keypoints", "bbox_by_camera_tlbr")
CAMERA_FIELDS = ("R", "t", "K", "dist")

# The paper's protocol (docs/design.md, section 8).
SPLITS: dict[str, tuple[str, ...]] = {
    "labeled": ("S1", "S5", "S6"),
    "unlabeled": ("S7", "S8"),
    "eval": ("S9", "S11"),
}
EVAL_FRAME_STEP = 64
# Sequences with broken recordings that learnable-triangulation leaves out of evaluation.
DAMAGED_ACTIONS: dict[str, tuple[str, ...]] = {"S9": ("Greeting-2", "SittingDown-2", "Waiting-1")}
IMAGE_FOLDERS = ("imageSequence", "imageSequence-undistorted")


@dataclass
class H36MOptions:
    """What to convert and how. `cameras`: names or indices into the labels' camera_names
    (None: all). `images`: 'distorted' (imageSequence, crops undistorted with its dist),
    'undistorted' (imageSequence-undistorted, dist = 0) or 'auto' (undistorted where that
    image exists)."""

    image_size: int = 256
    splits: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SPLITS))
    frame_step: int = 1  # labeled and unlabeled roles
    eval_frame_step: int = EVAL_FRAME_STEP
    cameras: Sequence[str | int] | None = None
    bbox_scale: float = 1.0
    images: str = "auto"
    with_damaged_actions: bool = False
    max_frames: int | None = None  # per role, for quick trial runs


# ------------------------------------------------------------------ reading the labels


def find_labels(root: Path, labels: Path | None = None) -> Path:
    """The labels file: `labels` if given, else ROOT/extra/ or ROOT/ LABELS_FILE."""
    if labels is not None:
        if not Path(labels).is_file():
            raise FileNotFoundError(f"Human3.6M labels file not found: {labels}")
        return Path(labels)
    candidates = [root / "extra" / LABELS_FILE, root / LABELS_FILE]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Human3.6M labels file not found: looked for {' and '.join(map(str, candidates))} "
        "(learnable-triangulation's generate-labels-npy-multiview.py writes it; pass "
        "--labels PATH if it lives elsewhere)")


def load_labels(path: Path) -> dict:
    """The labels dict, checked for the fields and shapes the converter reads."""
    labels = load_object_npy(path)  # arrays and plain data only: never runs code
    if not isinstance(labels, dict):
        raise ValueError(f"{path}: expected a pickled dict with {LABEL_KEYS}, "
                         f"got {type(labels).__name__}")
    missing = [k for k in LABEL_KEYS if k not in labels]
    if missing:
        raise ValueError(f"{path}: labels dict lacks {missing}")
    for key, kind in (("subject_names", "subject"), ("action_names", "action"),
                      ("camera_names", "camera")):
        for name in labels[key]:  # each becomes a folder of the image paths
            try:
                check_name(kind, str(name))
            except ValueError as exc:
                raise ValueError(f"{path}: {key}: {exc}") from None
    table, cameras = labels["table"], labels["cameras"]
    n_cams = len(labels["camera_names"])
    lacking = [f for f in TABLE_FIELDS if table.dtype.names is None or f not in table.dtype.names]
    if lacking:
        raise ValueError(f"{path}: labels table lacks fields {lacking}")
    if table["keypoints"].shape[1:] != (17, 3):
        raise ValueError(f"{path}: table keypoints must be [N, 17, 3], got "
                         f"{list(table['keypoints'].shape)}")
    if table["bbox_by_camera_tlbr"].shape[1:] != (n_cams, 4):
        raise ValueError(f"{path}: table bbox_by_camera_tlbr must be [N, {n_cams}, 4], got "
                         f"{list(table['bbox_by_camera_tlbr'].shape)}")
    lacking = [f for f in CAMERA_FIELDS
               if cameras.dtype.names is None or f not in cameras.dtype.names]
    if lacking:
        raise ValueError(f"{path}: labels cameras lack fields {lacking}")
    if cameras.shape != (len(labels["subject_names"]), n_cams):
        raise ValueError(f"{path}: cameras must be [n_subjects, n_cameras] = "
                         f"[{len(labels['subject_names'])}, {n_cams}], got {list(cameras.shape)}")
    return labels


def camera_from_labels(labels: dict, subject_idx: int, camera_idx: int) -> Camera:
    """The full-frame camera of one subject and view (t [3,1] mm -> [3])."""
    rec = labels["cameras"][subject_idx, camera_idx]
    return Camera(rec["K"], rec["R"], np.asarray(rec["t"]).reshape(3), rec["dist"],
                  name=str(labels["camera_names"][camera_idx]))


def box_from_tlbr(tlbr) -> tuple[float, float, float, float] | None:
    """(top, left, bottom, right) -> (x0, y0, x1, y1); None for the empty box of a missing
    view."""
    top, left, bottom, right = (float(v) for v in tlbr)
    if bottom <= top or right <= left:
        return None
    return left, top, right, bottom


def images_root(root: Path) -> Path:
    """ROOT/processed when it exists (learnable-triangulation's layout), else ROOT."""
    processed = root / "processed"
    return processed if processed.is_dir() else root


def image_path(images: Path, subject: str, action: str, camera: str, frame_idx: int,
               undistorted: bool) -> Path:
    folder = IMAGE_FOLDERS[1] if undistorted else IMAGE_FOLDERS[0]
    return images / subject / action / folder / camera / f"img_{frame_idx + 1:06d}.jpg"


# ------------------------------------------------------------------ planning


def _camera_indices(labels: dict, cameras: Sequence[str | int] | None) -> list[int]:
    names = [str(n) for n in labels["camera_names"]]
    if cameras is None:
        return list(range(len(names)))
    out = []
    for cam in cameras:
        if str(cam) in names:
            out.append(names.index(str(cam)))
        elif str(cam).isdigit() and int(cam) < len(names):
            out.append(int(cam))
        else:
            raise ValueError(f"camera {cam!r} is not in the labels file (cameras: "
                             f"{', '.join(names)}, or indices 0-{len(names) - 1})")
    return out


def every_nth_of_each_sequence(table: np.ndarray, rows: np.ndarray, step: int) -> np.ndarray:
    """The rows (sorted by subject, action, frame) at positions 0, step, 2*step ... within
    each (subject, action) sequence: every n-th frame the table holds, however densely the
    frames were extracted (h36m-fetch keeps every 5th recorded frame)."""
    rec = table[rows]
    order = np.lexsort((rec["frame_idx"], rec["action_idx"], rec["subject_idx"]))
    rows, rec = rows[order], rec[order]
    seq = rec["subject_idx"].astype(np.int64) * 1024 + rec["action_idx"]
    starts = np.r_[0, np.flatnonzero(np.diff(seq)) + 1]
    position = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    return rows[position % step == 0]


def select_rows(labels: dict, role: str, subjects: Sequence[str],
                options: H36MOptions) -> np.ndarray:
    """Row indices of the table for one role: its subjects, every n-th frame of each
    sequence, damaged sequences left out of eval."""
    names = [str(s) for s in labels["subject_names"]]
    absent = [s for s in subjects if s not in names]
    if absent:
        raise ValueError(f"subject(s) {absent} for role {role!r} are not in the labels file "
                         f"(it has {', '.join(names)})")
    table = labels["table"]
    mask = np.isin(table["subject_idx"], [names.index(s) for s in subjects])
    if role == "eval" and not options.with_damaged_actions:
        actions = [str(a) for a in labels["action_names"]]
        for subject, damaged in DAMAGED_ACTIONS.items():
            if subject in subjects:
                bad = [actions.index(a) for a in damaged if a in actions]
                mask &= ~((table["subject_idx"] == names.index(subject))
                          & np.isin(table["action_idx"], bad))
    step = options.eval_frame_step if role == "eval" else options.frame_step
    rows = every_nth_of_each_sequence(table, np.flatnonzero(mask), step)
    return rows[:options.max_frames] if options.max_frames else rows


@dataclass
class _Shot:
    """One table row, with what a worker needs (picklable, no reference to the table)."""

    subject: str
    action: str
    frame: int
    keypoints: np.ndarray  # [17, 3] world mm, our order
    boxes: list  # per selected view: (x0, y0, x1, y1) or None


@dataclass
class _Unit:
    """A chunk of shots of one role for one worker."""

    role: str
    shots: list[_Shot]
    cameras: dict[str, list[Camera]]  # subject -> full-frame camera per selected view
    images: Path
    options: H36MOptions


def check_finite(path: Path, labels: dict, rows: np.ndarray, cams: list[int]) -> None:
    """ValueError naming the labels file and the first bad frame when a row to convert has
    NaN or infinite keypoints or boxes, or a camera of its subject does: found while
    planning, not as a crash mid-run."""
    subjects = [str(s) for s in labels["subject_names"]]
    for s in np.unique(labels["table"]["subject_idx"][rows]):
        for c in cams:
            rec = labels["cameras"][s, c]
            bad = [f for f in CAMERA_FIELDS if not np.isfinite(rec[f]).all()]
            if bad:
                raise ValueError(f"{path}: camera {labels['camera_names'][c]} of "
                                 f"{subjects[s]} has NaN or infinite {', '.join(bad)}")
    rec = labels["table"][rows]
    finite = np.isfinite(rec["keypoints"]).all(axis=(1, 2)) & \
        np.isfinite(rec["bbox_by_camera_tlbr"]).all(axis=(1, 2))
    if not finite.all():
        first = rec[np.argmin(finite)]
        raise ValueError(
            f"{path}: keypoints or boxes are NaN or infinite in {np.sum(~finite)} frame(s) "
            f"to convert, the first {subjects[first['subject_idx']]} "
            f"{labels['action_names'][first['action_idx']]} frame {first['frame_idx']} "
            "(0-based frame_idx)")


def _units(labels: dict, images: Path, options: H36MOptions, source: Path,
           chunk: int = 32) -> list[ConversionUnit]:
    """The units of every role; `source` is the labels file (named in errors)."""
    cams = _camera_indices(labels, options.cameras)
    subjects = [str(s) for s in labels["subject_names"]]
    actions = [str(a) for a in labels["action_names"]]
    table = labels["table"]
    units = []
    for role, role_subjects in options.splits.items():
        rows = select_rows(labels, role, role_subjects, options)
        check_finite(source, labels, rows, cams)
        cameras = {s: [camera_from_labels(labels, subjects.index(s), c) for c in cams]
                   for s in role_subjects}
        for start in range(0, len(rows), chunk):
            shots = []
            for r in rows[start:start + chunk]:
                rec = table[r]
                boxes = [box_from_tlbr(rec["bbox_by_camera_tlbr"][c]) for c in cams]
                shots.append(_Shot(subjects[rec["subject_idx"]], actions[rec["action_idx"]],
                                   int(rec["frame_idx"]),
                                   np.asarray(rec["keypoints"], np.float64)[
                                       list(LEARNABLE_TRIANGULATION_TO_H36M)], boxes))
            units.append(ConversionUnit(role, len(shots),
                                        _Unit(role, shots, cameras, images, options)))
    check_boxes_hold_joints([s for u in units for s in u.payload.shots], units)
    return units


def check_boxes_hold_joints(shots: list[_Shot], units: list[ConversionUnit],
                            samples: int = 64) -> None:
    """Raise ValueError unless most boxes contain their projected pelvis, checked on a few
    evenly spaced tuples: catches boxes in another order than TLBR, or cameras that do not
    belong to the keypoints."""
    cameras = {s: c for u in units for s, c in u.payload.cameras.items()}
    inside = total = 0
    for shot in shots[::max(1, len(shots) // samples)]:
        for camera, box in zip(cameras[shot.subject], shot.boxes):
            if box is None:
                continue
            u, v = camera.project(shot.keypoints[:1])[0]
            inside += bool(box[0] <= u <= box[2] and box[1] <= v <= box[3])
            total += 1
    if total and inside < 0.5 * total:
        raise ValueError(
            f"only {inside} of {total} checked boxes contain the projected pelvis: the labels' "
            "bbox_by_camera_tlbr should be (top, left, bottom, right) pixels and the cameras "
            "world -> camera (x_cam = R X + t, mm)")


# ------------------------------------------------------------------ one tuple


def _read_view(unit: _Unit, shot: _Shot, camera: Camera) -> tuple[np.ndarray, Camera]:
    """The full frame (RGB) of one view and its camera (dist dropped when undistorted)."""
    want = unit.options.images
    undistorted = want != "distorted"
    path = image_path(unit.images, shot.subject, shot.action, camera.name, shot.frame,
                      undistorted)
    if want == "auto" and not path.is_file():
        undistorted = False
        path = image_path(unit.images, shot.subject, shot.action, camera.name, shot.frame,
                          False)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(
            f"Human3.6M image missing or unreadable: {path} (subject {shot.subject}, action "
            f"{shot.action}, camera {camera.name}, frame {shot.frame}; its box is not empty, "
            "so the view should exist)")
    h, w = image.shape[:2]
    full = Camera(camera.K, camera.R, camera.t, camera.dist, (w, h), camera.name)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), full.undistorted() if undistorted else full


def produce_samples(unit: _Unit) -> Iterator[dict | None]:
    """Encoded samples of one unit, None for a tuple without any view (runs in a worker)."""
    size = unit.options.image_size
    for shot in unit.shots:
        images, cameras, boxes = [], [], []
        for camera, box in zip(unit.cameras[shot.subject], shot.boxes):
            if box is None:  # empty box: the view was not recorded
                images.append(None)
                cameras.append(None)
                boxes.append(None)
                continue
            frame, full = _read_view(unit, shot, camera)
            # the crop is undistorted (crop_view): its box is in pinhole pixels
            box = scale_box(square_about_centre(undistort_box(box, full)),
                            unit.options.bbox_scale)
            image, cropped = crop_view(frame, full, box, size)
            images.append(image)
            cameras.append(cropped)
            boxes.append([round(v, 2) for v in box])
        if all(img is None for img in images):
            yield None  # no view at all: the writer counts it as skipped
            continue
        meta = {"subject": shot.subject, "action": shot.action, "frame": shot.frame,
                "clip": 0, "role": unit.role, "dataset": "h36m", "source_boxes": boxes,
                "views": [c.name for c in unit.cameras[shot.subject]]}
        # an unlabeled tuple's 3D is withheld: kept only to score the P-GT
        yield encode_for_role(images, cameras, shot.keypoints, meta)


def _check_subject_folders(images: Path, labels: dict, options: H36MOptions) -> None:
    for role, subjects in options.splits.items():
        for subject in subjects:
            if not (images / subject).is_dir():
                raise FileNotFoundError(
                    f"Human3.6M images of subject {subject} (role {role}) not found: "
                    f"{images / subject} (expected processed/<subject>/<action>/imageSequence/"
                    "<camera>/img_%06d.jpg)")


def convert_h36m(root: str | Path, out: str | Path, options: H36MOptions | None = None, *,
                 labels: str | Path | None = None, workers: int = 0,
                 samples_per_shard: int = 1000, shuffle_buffer: int = 0,
                 progress: bool = True) -> ConversionSummary:
    """Convert a Human3.6M tree into shards under `out` (ROLE-NNNNNN.tar per role and
    manifest.json). Raises FileNotFoundError / ValueError naming what is missing."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"Human3.6M root folder not found: {root}")
    options = options or H36MOptions()
    if options.images not in ("auto", "distorted", "undistorted"):
        raise ValueError(f"images must be auto, distorted or undistorted, got {options.images!r}")
    for name in ("image_size", "frame_step", "eval_frame_step"):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)}")
    labels_path = find_labels(root, Path(labels) if labels else None)
    labels_dict = load_labels(labels_path)
    images = images_root(root)
    units = _units(labels_dict, images, options, labels_path)
    _check_subject_folders(images, labels_dict, options)
    cams = _camera_indices(labels_dict, options.cameras)
    subjects = [str(s) for s in labels_dict["subject_names"]]
    rigs = {s: [camera_from_labels(labels_dict, subjects.index(s), c).to_dict() for c in cams]
            for role_subjects in options.splits.values() for s in role_subjects}
    return write_dataset(
        out, units, produce_samples, samples_per_shard=samples_per_shard,
        shuffle_buffer=shuffle_buffer, workers=workers, progress=progress,
        dataset="h36m", splits={r: list(s) for r, s in options.splits.items()},
        camera_names=[str(labels_dict["camera_names"][c]) for c in cams], cameras=rigs,
        frame_step=options.frame_step, eval_frame_step=options.eval_frame_step)
