"""Reading Human3.6M's official release, as its archives unpack:

    ROOT/S<n>/MyPoseFeatures/D3_Positions/<Action[ N]>.cdf      variable `Pose` [1, frames, 96]:
                                                               32 joints, world mm, 50 fps
    ROOT/S<n>/Videos/<Action[ N]>.<camera id>.mp4               the 50 fps videos (distorted;
                                                               1000x1000 or 1000x1002 px)
    ROOT/S<n>/MySegmentsMat/ground_truth_bb/<Action[ N]>.<camera id>.mat
                                                               MATLAB v7.3 (HDF5): `Masks`
                                                               [frames, 1] references to
                                                               [W, H] masks, 1 inside the box

CDF is read with cdflib (pure Python), the box files with h5py, videos with OpenCV one frame
at a time. A sequence's two takes are `Action` and `Action 1` (or `Action 1`, `Action 2`);
some subjects spell actions differently (S1's TakingPhoto / WalkingDog are Photo / WalkDog
elsewhere): ACTION_ALIASES gives every sequence one action name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cdflib
import cv2
import h5py
import numpy as np

from pose3d.geometry import CAMERA_NAMES
from pose3d.skeleton.mappings import H36M_RELEASE_NUM_JOINTS, H36M_RELEASE_TO_H36M

FPS = 50
POSES_DIR = Path("MyPoseFeatures") / "D3_Positions"
VIDEOS_DIR = Path("Videos")
BOXES_DIR = Path("MySegmentsMat") / "ground_truth_bb"
POSE_VARIABLE = "Pose"
# Other subjects' spelling -> the one used in sample names (metadata.xml's and S1's).
ACTION_ALIASES = {"Photo": "TakingPhoto", "WalkDog": "WalkingDog"}
# Default gap (frames) above which the reader seeks instead of decoding its way forward.
SEEK_GAP = 16


@dataclass(frozen=True)
class Take:
    """One recorded take: `prefix` is the release's file name stem (e.g. 'Photo 1'),
    `action` the common action name, `subaction` 1 or 2; `name` is 'Action-subaction' as
    learnable-triangulation names its folders."""

    subject: str
    prefix: str
    action: str
    subaction: int

    @property
    def name(self) -> str:
        return f"{self.action}-{self.subaction}"


def split_prefix(prefix: str) -> tuple[str, int]:
    """'Greeting 1' -> ('Greeting', 1); 'Greeting' -> ('Greeting', 0)."""
    match = re.fullmatch(r"(.*?)\s+(\d+)", prefix)
    return (match.group(1), int(match.group(2))) if match else (prefix, 0)


def canonical_action(name: str) -> str:
    return ACTION_ALIASES.get(name, name)


def is_release_root(root: Path) -> bool:
    """Whether `root` holds at least one S*/MyPoseFeatures/D3_Positions folder."""
    return any(p.is_dir() for p in root.glob(f"S*/{POSES_DIR.as_posix()}"))


def poses_dir(root: Path, subject: str) -> Path:
    return root / subject / POSES_DIR


def video_path(root: Path, subject: str, prefix: str, camera: str) -> Path:
    return root / subject / VIDEOS_DIR / f"{prefix}.{camera}.mp4"


def box_path(root: Path, subject: str, prefix: str, camera: str) -> Path:
    return root / subject / BOXES_DIR / f"{prefix}.{camera}.mat"


def list_sequences(root: Path, subject: str,
                   mapping: dict[tuple[str, int], str] | None = None) -> list[Take]:
    """The subject's sequences from its CDF files. `mapping` ((action, subaction) -> file
    prefix, from metadata.xml) numbers the takes as the release does; without it the take
    without a number (or the lower number) is subaction 1. Files starting with '_' (the
    release's '_ALL' concatenations) are not sequences."""
    folder = poses_dir(root, subject)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Human3.6M poses of subject {subject} not found: {folder} (unpack the release's "
            f"Poses_D3_Positions_{subject} archive into {root})")
    prefixes = sorted(p.stem for p in folder.glob("*.cdf") if not p.stem.startswith("_"))
    if not prefixes:
        raise FileNotFoundError(f"no Human3.6M pose files (*.cdf) in {folder}")
    known = {prefix: key for key, prefix in (mapping or {}).items()}
    by_action: dict[str, list[tuple[int, str]]] = {}
    sequences = []
    for prefix in prefixes:
        if prefix in known:
            action, subaction = known[prefix]
            sequences.append(Take(subject, prefix, canonical_action(action), subaction))
            continue
        action, number = split_prefix(prefix)
        by_action.setdefault(canonical_action(action), []).append((number, prefix))
    for action, takes in by_action.items():
        # numbered after any take the mapping named, so that no two takes share a name
        first = 1 + max((s.subaction for s in sequences if s.action == action), default=0)
        for rank, (_, prefix) in enumerate(sorted(takes), start=first):
            sequences.append(Take(subject, prefix, action, rank))
    return sorted(sequences, key=lambda s: (s.action, s.subaction))


def read_poses(path: Path) -> np.ndarray:
    """The CDF's `Pose` as our 17 joints [frames, 17, 3] world mm."""
    if not path.is_file():
        raise FileNotFoundError(f"Human3.6M pose file not found: {path}")
    try:
        cdf = cdflib.CDF(str(path))
        info = cdf.cdf_info()
    except Exception as exc:  # cdflib raises several types for a file that is not CDF
        raise ValueError(f"{path}: not a readable CDF file ({type(exc).__name__}: {exc})") \
            from None
    names = list(info.zVariables) + list(info.rVariables)
    if POSE_VARIABLE not in names:
        raise ValueError(f"{path}: no variable '{POSE_VARIABLE}' (it has "
                         f"{', '.join(names) or 'none'}); expected D3_Positions poses")
    try:
        pose = np.asarray(cdf.varget(POSE_VARIABLE), dtype=np.float64)
    except Exception as exc:  # cdflib reads past the end of a cut file in several ways
        raise ValueError(f"{path}: cannot read '{POSE_VARIABLE}': the file is truncated or "
                         f"damaged ({type(exc).__name__}: {exc})") from None
    width = 3 * H36M_RELEASE_NUM_JOINTS
    if pose.ndim == 3 and pose.shape[0] == 1:
        pose = pose[0]
    if pose.ndim != 2 or pose.shape[1] != width:
        raise ValueError(f"{path}: '{POSE_VARIABLE}' must be [1, frames, {width}] (32 joints "
                         f"x 3, world mm), got {list(pose.shape)}")
    joints = pose.reshape(len(pose), H36M_RELEASE_NUM_JOINTS, 3)[:, list(H36M_RELEASE_TO_H36M)]
    bad = np.flatnonzero(~np.isfinite(joints).all(axis=(1, 2)))
    if len(bad):  # found here, while planning, not as a crash hours into the run
        raise ValueError(f"{path}: '{POSE_VARIABLE}' is NaN or infinite in {len(bad)} "
                         f"frame(s), the first at frame {bad[0]} (0-based)")
    return joints


class VideoFrames:
    """Frames of one video by index, decoded one at a time: forward gaps up to `seek_gap`
    are decoded through (grab), longer ones and backward steps seek."""

    def __init__(self, path: Path, seek_gap: int = SEEK_GAP) -> None:
        self.path = path
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            self.capture.release()
            raise ValueError(f"cannot open video {path} (unreadable or not a video)")
        self.seek_gap = seek_gap
        self.next_index = 0

    @property
    def frame_count(self) -> int:
        return int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) px."""
        return (int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def read(self, index: int) -> np.ndarray | None:
        """Frame `index` (0-based) as RGB [H, W, 3] uint8, None where it cannot be decoded."""
        if index < self.next_index or index - self.next_index > self.seek_gap:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            self.next_index = index
        while self.next_index < index:
            self.next_index += 1
            if not self.capture.grab():
                return None
        ok, image = self.capture.read()
        self.next_index += 1
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if ok else None

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe_video(path: Path) -> tuple[int, tuple[int, int]]:
    """(frame count, (width, height)) of a video whose first frame decodes; ValueError
    naming the file otherwise."""
    with VideoFrames(path) as video:
        count, size = video.frame_count, video.size
        if count <= 0 or video.read(0) is None:
            raise ValueError(f"cannot decode video {path} (no frame could be read)")
    return count, size


class BoxFile:
    """The ground-truth person boxes of one sequence and camera (a ground_truth_bb .mat)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file = h5py.File(path, "r")
            self.refs = np.asarray(self.file["Masks"]).reshape(-1)
        except (OSError, KeyError) as exc:
            raise ValueError(f"{path}: not a ground_truth_bb box file (MATLAB v7.3 with "
                             f"'Masks'): {exc}") from None

    def __len__(self) -> int:
        return len(self.refs)

    def box(self, index: int) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) px of frame `index`'s mask, None where it is empty or absent."""
        if index >= len(self.refs):
            return None
        mask = np.asarray(self.file[self.refs[index]]).T  # MATLAB stores [W, H]
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return None
        return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)

    def close(self) -> None:
        self.file.close()


__all__ = ["ACTION_ALIASES", "BoxFile", "CAMERA_NAMES", "FPS", "Take", "VideoFrames",
           "box_path", "canonical_action", "is_release_root", "list_sequences", "poses_dir",
           "probe_video", "read_poses", "split_prefix", "video_path"]
