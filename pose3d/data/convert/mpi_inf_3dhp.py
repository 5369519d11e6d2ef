"""MPI-INF-3DHP (training set) -> pose3d shards with the paper's splits.

On disk (the dataset's own download layout):

    ROOT/S{1..8}/Seq{1,2}/annot.mat            annot2 / annot3 / univ_annot3: cell arrays
                                               (n_cameras x 1) of [frames, 28*2] pixels /
                                               [frames, 28*3] camera mm (per camera)
    ROOT/S{1..8}/Seq{1,2}/camera.calibration   "Skeletool Camera Calibration File V1.0",
                                               then per camera: name N, sensor, size W H,
                                               animated 0, intrinsic (4x4 row-major),
                                               extrinsic (4x4 row-major, world -> camera,
                                               mm), radial (k1 [k2 [k3]]: OpenCV's
                                               radial terms; 0 in the published files)
    ROOT/S{1..8}/Seq{1,2}/imageSequence/video_{cam}.avi
    or extracted frames: ROOT/S*/Seq*/imageFrames/video_{cam}/frame_%06d.jpg (1-based)

annot3 holds the pose in each camera's frame; the world pose is `R^T (x_cam - t)`,
averaged over the converted cameras. 3DHP has no person boxes: each view is cropped to a
square around its annotated 2D joints with a margin; a camera whose calibration carries
radial distortion gets an undistorted crop (pose3d.data.convert.crop) and its 2D joints
undistorted, so every stored camera has zero distortion. Frames are read one at a time (a
training frame is 2048 x 2048), so memory stays small however long a sequence is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from pose3d.data.convert.crop import crop_view, undistort_points
from pose3d.data.convert.writer import ConversionSummary, ConversionUnit, write_dataset
from pose3d.data.schema import encode_for_role
from pose3d.geometry import Camera, square_box
from pose3d.skeleton.mappings import MPI_INF_3DHP_NAMES, MPI_INF_3DHP_TO_H36M

CALIBRATION_FILE = "camera.calibration"
ANNOT_FILE = "annot.mat"
CALIBRATION_HEADER = "Skeletool Camera Calibration File"
NUM_SOURCE_JOINTS = len(MPI_INF_3DHP_NAMES)  # 28

# The paper's protocol (docs/design.md, section 8): training set only, these cameras.
SPLITS: dict[str, tuple[str, ...]] = {
    "labeled": ("S1", "S2", "S3"),
    "unlabeled": ("S4", "S5", "S6", "S7"),
    "eval": ("S8",),
}
CAMERAS: tuple[int, ...] = (0, 2, 7, 8)
SEQUENCES: tuple[str, ...] = ("Seq1", "Seq2")
FRAME_SOURCES = ("auto", "video", "images")


@dataclass
class MpiInf3dhpOptions:
    """What to convert and how. `frames`: 'video' (imageSequence/video_N.avi), 'images'
    (imageFrames/video_N/frame_%06d.jpg) or 'auto' (images where that folder exists)."""

    image_size: int = 256
    splits: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SPLITS))
    cameras: Sequence[int] = CAMERAS
    sequences: Sequence[str] = SEQUENCES
    frame_step: int = 1  # labeled and unlabeled roles
    eval_frame_step: int = 1  # the paper evaluates on every S8 frame
    box_margin: float = 0.2  # of the 2D joints' extent, on each side
    frames: str = "auto"
    max_frames: int | None = None  # per sequence, for quick trial runs


# ------------------------------------------------------------------ calibration


def _numbers(path: Path, lineno: int, key: str, values: list[str], count: int) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in values])
    except ValueError:
        arr = np.array([])
    if len(arr) != count:
        raise ValueError(f"{path}:{lineno}: '{key}' needs {count} numbers, got "
                         f"{' '.join(values)!r}")
    return arr


def read_calibration(path: Path) -> dict[int, Camera]:
    """camera.calibration -> {camera index: full-frame Camera (radial distortion from its
    `radial` line, none without one)}."""
    if not path.is_file():
        raise FileNotFoundError(f"MPI-INF-3DHP calibration file not found: {path}")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip().startswith(CALIBRATION_HEADER):
        raise ValueError(f"{path}: not a calibration file (first line should be "
                         f"'{CALIBRATION_HEADER} V1.0')")
    blocks: dict[int, dict[str, np.ndarray]] = {}
    current: dict[str, np.ndarray] | None = None
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        key, values = parts[0], parts[1:]
        if key == "name":
            current = blocks.setdefault(int(_numbers(path, lineno, key, values, 1)[0]), {})
        elif current is None:
            raise ValueError(f"{path}:{lineno}: '{key}' before the first 'name' line")
        elif key in ("size", "intrinsic", "extrinsic", "animated"):
            count = {"size": 2, "intrinsic": 16, "extrinsic": 16, "animated": 1}[key]
            current[key] = _numbers(path, lineno, key, values, count)
        elif key == "radial":  # k1 [k2 [k3]]: more would be a lens model we do not know
            current[key] = _numbers(path, lineno, key, values, min(max(len(values), 1), 3))
    cameras = {}
    for index, block in blocks.items():
        missing = [k for k in ("size", "intrinsic", "extrinsic") if k not in block]
        if missing:
            raise ValueError(f"{path}: camera {index} lacks {missing}")
        if block.get("animated", [0])[0] != 0:
            raise ValueError(f"{path}: camera {index} is animated (per-frame calibration), "
                             "which the converter does not support")
        intrinsic, extrinsic = block["intrinsic"].reshape(4, 4), block["extrinsic"].reshape(4, 4)
        w, h = (int(v) for v in block["size"])
        radial = np.zeros(3)
        radial[:len(block.get("radial", []))] = block.get("radial", [])
        cameras[index] = Camera(intrinsic[:3, :3], extrinsic[:3, :3], extrinsic[:3, 3],
                                [radial[0], radial[1], 0.0, 0.0, radial[2]],
                                image_size=(w, h), name=str(index))
    return cameras


# ------------------------------------------------------------------ annotations


def _cell_rows(annot: dict, name: str, path: Path, cameras: Sequence[int],
               width: int) -> list[np.ndarray]:
    if name not in annot:
        raise ValueError(f"{path}: no '{name}' (an MPI-INF-3DHP training annot.mat has "
                         "annot2, annot3 and univ_annot3)")
    cell = np.asarray(annot[name], dtype=object).reshape(-1)
    out = []
    for cam in cameras:
        if cam >= len(cell):
            raise ValueError(f"{path}: '{name}' has {len(cell)} cameras, camera {cam} is not "
                             "there")
        arr = np.asarray(cell[cam], dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != NUM_SOURCE_JOINTS * width:
            raise ValueError(f"{path}: '{name}' of camera {cam} must be [frames, "
                             f"{NUM_SOURCE_JOINTS * width}], got {list(arr.shape)}")
        out.append(arr.reshape(len(arr), NUM_SOURCE_JOINTS, width))
    return out


def read_annotations(path: Path, cameras: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """annot.mat -> (annot2 [C, N, 28, 2] pixels, annot3 [C, N, 28, 3] camera mm) for the
    given cameras; N is the shortest camera's frame count."""
    if not path.is_file():
        raise FileNotFoundError(f"MPI-INF-3DHP annotation file not found: {path}")
    try:
        annot = scipy.io.loadmat(str(path))
    except (ValueError, NotImplementedError, OSError) as exc:
        raise ValueError(f"{path}: unreadable .mat file ({exc})") from exc
    a2 = _cell_rows(annot, "annot2", path, cameras, 2)
    a3 = _cell_rows(annot, "annot3", path, cameras, 3)
    n = min(len(a) for a in a2 + a3)
    return np.stack([a[:n] for a in a2]), np.stack([a[:n] for a in a3])


def world_pose(annot3: np.ndarray, cameras: Sequence[Camera]) -> np.ndarray:
    """Camera-frame poses [C, ..., J, 3] mm -> one world pose [..., J, 3] mm (the mean of
    `R^T (x - t)` over the cameras)."""
    return np.mean([(a - cam.t) @ cam.R for a, cam in zip(annot3, cameras)], axis=0)


def check_annotations_match_cameras(directory: Path, annot3: np.ndarray,
                                    cameras: Sequence[Camera], tolerance_mm: float = 50.0
                                    ) -> None:
    """Raise ValueError when the cameras' views of one frame [C, 1, J, 3] disagree about
    where the body is in the world: annot3 not in camera coordinates, or a calibration that
    does not belong to the sequence."""
    worlds = [(a - cam.t) @ cam.R for a, cam in zip(annot3, cameras)]
    spread = max(float(np.abs(w - worlds[0]).max()) for w in worlds)
    if spread > tolerance_mm:
        raise ValueError(
            f"{directory}: annot3 and camera.calibration disagree by {spread:.0f} mm in the "
            "world (annot3 should be in each camera's frame, mm; the extrinsic world -> "
            "camera)")


# ------------------------------------------------------------------ frames


class _FrameReader:
    """Frames of one camera in order, from the video or from extracted JPEGs."""

    def __init__(self, sequence_dir: Path, camera: int, source: str) -> None:
        self.images = sequence_dir / "imageFrames" / f"video_{camera}"
        self.video = sequence_dir / "imageSequence" / f"video_{camera}.avi"
        use_images = source == "images" or (source == "auto" and self.images.is_dir())
        self.capture = None
        self.next_index = 0
        if use_images:
            if not self.images.is_dir():
                raise FileNotFoundError(f"MPI-INF-3DHP frames folder not found: {self.images}")
        else:
            if not self.video.is_file():
                raise FileNotFoundError(
                    f"MPI-INF-3DHP video not found: {self.video} (nor extracted frames in "
                    f"{self.images})")
            self.capture = cv2.VideoCapture(str(self.video))
            if not self.capture.isOpened():
                raise ValueError(f"cannot open video {self.video}")

    def read(self, index: int) -> np.ndarray | None:
        """Frame `index` (0-based, increasing between calls) as RGB, None past the end."""
        if self.capture is None:
            image = cv2.imread(str(self.images / f"frame_{index + 1:06d}.jpg"), cv2.IMREAD_COLOR)
        else:
            image = None
            while self.next_index <= index:
                grab_only = self.next_index < index
                ok = self.capture.grab()
                self.next_index += 1
                if not ok:
                    return None
                if not grab_only:
                    ok, image = self.capture.retrieve()
                    if not ok:
                        return None
        return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


# ------------------------------------------------------------------ one sequence


@dataclass
class _Unit:
    role: str
    subject: str
    sequence: str
    directory: Path
    frames: list[int]
    options: MpiInf3dhpOptions


def _tuple(unit: _Unit, readers: list[_FrameReader], cameras: list[Camera], frame: int,
           annot2: np.ndarray, annot3: np.ndarray) -> dict | None:
    size = unit.options.image_size
    joints = world_pose(annot3[:, frame], cameras)[list(MPI_INF_3DHP_TO_H36M)]
    images, crops, joints2d = [], [], []
    for v, (reader, camera) in enumerate(zip(readers, cameras)):
        image = reader.read(frame)
        # annot2 is in recorded pixels; the crop is undistorted (crop_view), so are they
        points = undistort_points(annot2[v, frame][list(MPI_INF_3DHP_TO_H36M)], camera)
        if image is None or not np.isfinite(points).all():
            images.append(None)  # frame past the end of this camera's video: view missing
            crops.append(None)
            joints2d.append(None)
            continue
        h, w = image.shape[:2]
        full = Camera(camera.K, camera.R, camera.t, camera.dist, (w, h), camera.name)
        box = square_box(points, unit.options.box_margin)
        crop, cropped = crop_view(image, full, box, size)
        scale = size / (box[2] - box[0])
        images.append(crop)
        crops.append(cropped)
        joints2d.append(np.round((points - box[:2]) * scale, 2).tolist())
    if all(img is None for img in images):
        return None
    meta = {"subject": unit.subject, "action": unit.sequence, "frame": frame, "clip": 0,
            "role": unit.role, "dataset": "mpi_inf_3dhp", "joints2d": joints2d,
            "views": [c.name for c in cameras]}
    # an unlabeled tuple's 3D is withheld: kept only to score the P-GT
    return encode_for_role(images, crops, joints, meta)


def produce_samples(unit: _Unit) -> Iterator[dict | None]:
    """Encoded samples of one sequence, frame by frame (runs in a worker)."""
    cams = list(unit.options.cameras)
    calibration = read_calibration(unit.directory / CALIBRATION_FILE)
    cameras = [calibration[c] for c in cams]
    annot2, annot3 = read_annotations(unit.directory / ANNOT_FILE, cams)
    readers = [_FrameReader(unit.directory, c, unit.options.frames) for c in cams]
    try:
        for frame in unit.frames:
            yield _tuple(unit, readers, cameras, frame, annot2, annot3)
    finally:
        for reader in readers:
            reader.close()


def _plan(root: Path, options: MpiInf3dhpOptions) -> list[ConversionUnit]:
    """Check every sequence's files and cameras up front; one unit per sequence."""
    units = []
    for role, subjects in options.splits.items():
        step = options.eval_frame_step if role == "eval" else options.frame_step
        for subject in subjects:
            if not (root / subject).is_dir():
                raise FileNotFoundError(f"MPI-INF-3DHP subject {subject} (role {role}) not "
                                        f"found: {root / subject}")
            for sequence in options.sequences:
                directory = root / subject / sequence
                if not directory.is_dir():
                    raise FileNotFoundError(f"MPI-INF-3DHP sequence not found: {directory}")
                calibration = read_calibration(directory / CALIBRATION_FILE)
                absent = [c for c in options.cameras if c not in calibration]
                if absent:
                    raise ValueError(f"{directory / CALIBRATION_FILE}: camera(s) {absent} not "
                                     f"there (it has {sorted(calibration)})")
                annot2, annot3 = read_annotations(directory / ANNOT_FILE, options.cameras)
                check_annotations_match_cameras(
                    directory, annot3[:, :1], [calibration[c] for c in options.cameras])
                for c in options.cameras:  # fail now, not hours into the run
                    _FrameReader(directory, c, options.frames).close()
                frames = list(range(0, annot2.shape[1], step))[:options.max_frames]
                units.append(ConversionUnit(role, len(frames), _Unit(
                    role, subject, sequence, directory, frames, options)))
    return units


def convert_mpi_inf_3dhp(root: str | Path, out: str | Path,
                         options: MpiInf3dhpOptions | None = None, *, workers: int = 0,
                         samples_per_shard: int = 1000, shuffle_buffer: int = 0,
                         progress: bool = True) -> ConversionSummary:
    """Convert an MPI-INF-3DHP training-set tree into shards under `out`. Raises
    FileNotFoundError / ValueError naming what is missing."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"MPI-INF-3DHP root folder not found: {root}")
    options = options or MpiInf3dhpOptions()
    if options.frames not in FRAME_SOURCES:
        raise ValueError(f"frames must be one of {FRAME_SOURCES}, got {options.frames!r}")
    for name in ("image_size", "frame_step", "eval_frame_step"):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)}")
    if not options.cameras:
        raise ValueError("no cameras selected")
    units = _plan(root, options)
    rigs = {f"{u.payload.subject}/{u.payload.sequence}":
            [read_calibration(u.payload.directory / CALIBRATION_FILE)[c].to_dict()
             for c in options.cameras] for u in units}
    return write_dataset(
        out, units, produce_samples, samples_per_shard=samples_per_shard,
        shuffle_buffer=shuffle_buffer, workers=workers, progress=progress,
        dataset="mpi_inf_3dhp", splits={r: list(s) for r, s in options.splits.items()},
        camera_names=[str(c) for c in options.cameras], cameras=rigs,
        frame_step=options.frame_step, eval_frame_step=options.eval_frame_step)
