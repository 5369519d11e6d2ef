"""What `pose3d predict` writes: predictions as JSON and NPZ, overlay pictures (PNG per
image, an mp4 per video through OpenCV's VideoWriter) and a 3D figure. The drawing itself
is the project's one drawing module, pose3d.data.draw (2D with OpenCV, 3D with matplotlib).

Each output folder (`--out/<input name>`, or `--out` itself for a rig) is written into a
temporary folder beside it (`.NAME.partial-XXXX`) and swapped in only when complete (the
datasets' rule, pose3d.data.staging): a failed or interrupted rerun leaves the earlier
predictions as they were, never old predictions beside new overlays. `pose3d predict` with
several inputs stages the whole invocation (staged_outputs): every input's folder is
swapped in only once all of them are complete, so --out never mixes two runs. A folder is
replaced only when it is empty or holds pose3d predict's output (its predictions.json)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pose3d.data.draw import draw_skeleton, draw_skeleton_3d, plt, save_figure
from pose3d.data.staging import _swap
from pose3d.json_input import load_json
from pose3d.skeleton import JOINT_NAMES, ROOT

UNITS = {"joints2d": "input pixels (x right, y down)",
         "joints3d_rel": "camera mm, root (pelvis) at 0 (x right, y down, z forward)",
         "joints3d_cam": "camera mm (x right, y down, z forward)",
         "joints3d_world": "world mm (the rig's frame)",
         "root_depth": "camera mm", "confidences": "F_mv's per-joint weight (0-1)",
         "valid3d": "triangulated from two or more views",
         "box": "input pixels x0, y0, x1, y1 (square crop)",
         "coords": "heatmap voxels (u', v', z')"}


def check_folder(folder: str | Path) -> None:
    """FileExistsError (one line) unless `folder` is absent, empty or a folder of pose3d
    predict's output, which a rerun may replace as a whole."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    if not folder.is_dir() or not any(folder.iterdir()) or _is_predict_output(folder):
        return
    raise FileExistsError(f"{folder} holds files pose3d predict did not write (no "
                          f"predictions.json of its own), and a rerun replaces that folder "
                          f"as a whole: move them away or choose another --out")


def _is_predict_output(folder: Path) -> bool:
    try:
        doc = load_json((folder / "predictions.json").read_bytes(), str(folder))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"joint_names", "units", "frames"} <= set(doc)


@contextlib.contextmanager
def staged(folder: str | Path) -> Iterator[Path]:
    """A temporary folder beside `folder` to write into, swapped in for `folder` when the
    block ends without an error and removed when it raises (`folder` untouched). Checked
    first (check_folder)."""
    folder = Path(folder)
    check_folder(folder)
    parent = folder.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=parent))
    try:
        yield tmp
        _swap(tmp, folder.absolute())
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_outputs(out: str | Path, names: list[str]) -> Iterator[Path]:
    """One invocation's output folders (out/NAME for each of `names`) written into one
    temporary folder inside `out` and swapped in together when the block ends without an
    error, one rename pair after another with no work between them; when it raises, nothing
    under `out` has changed (a failure on the last input leaves the first one's earlier
    predictions too). Each out/NAME is checked first (check_folder)."""
    out = Path(out).absolute()
    for name in names:
        check_folder(out / name)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".predict.partial-", dir=out))
    try:
        yield tmp
        missing = [name for name in names if not (tmp / name).is_dir()]
        if missing:
            raise ValueError(f"nothing was written for {', '.join(missing)}")
        for name in names:
            _swap(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()


def write_timing(folder: str | Path, timing: dict) -> Path:
    """timing.json: frames, seconds and where they went (pose3d.predict.runner.timing)."""
    path = Path(folder) / "timing.json"
    path.write_text(json.dumps(timing, indent=1))
    return path


def overlay(image: np.ndarray, joints2d: np.ndarray, box=None) -> np.ndarray:
    """A copy of the RGB frame with the skeleton [J, 2] (input pixels) and the crop box."""
    out = np.ascontiguousarray(image).copy()
    thickness = max(2, round(max(out.shape[:2]) / 250))
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), 1, cv2.LINE_AA)
    return draw_skeleton(out, joints2d, None, thickness)


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


class VideoOut:
    """An mp4 of RGB frames (OpenCV VideoWriter, mp4v), opened at the first frame."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps, self.writer = Path(path), fps, None

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(os.fspath(self.path),
                                          cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"could not open {self.path} for writing (OpenCV VideoWriter)")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], names: list[str]) -> Path:
    """All frames' arrays (float32) and their frame names in one NPZ."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, frame=np.asarray(names),
                        joint_names=np.asarray(JOINT_NAMES),
                        **{k: _compact(v) for k, v in arrays.items()})
    return path


def _compact(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a


def write_json(path: str | Path, arrays: dict[str, np.ndarray], names: list[str],
               meta: dict) -> Path:
    """One record per frame (its name and every array's row, rounded to 0.01), with the
    joint names, units and `meta` (input, checkpoint, how the root depth was chosen)."""
    frames = []
    for i, name in enumerate(names):
        rec = {"frame": name}
        for k, v in arrays.items():
            if k in UNITS and k != "coords":
                rec[k] = np.round(np.asarray(v[i], dtype=np.float64), 2).tolist()
        frames.append(rec)
    doc = {**meta, "joint_names": list(JOINT_NAMES),
           "units": {k: u for k, u in UNITS.items() if k in arrays and k != "coords"},
           "frames": frames}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path


def figure_3d(path: str | Path, image: np.ndarray, joints2d: np.ndarray,
              joints3d: np.ndarray, title: str = "", world: bool = False,
              box=None) -> Path:
    """The frame with its overlay (zoomed on `box` grown 1.5x when given) next to the 3D
    pose (mm, root-centred). Camera joints (y down, z forward) are turned so that up is
    up; world joints are drawn as they are."""
    pts = np.asarray(joints3d, dtype=np.float64)
    pts = pts - pts[ROOT]
    if not world:
        pts = np.stack([pts[:, 0], pts[:, 2], -pts[:, 1]], axis=1)
    fig = plt.figure(figsize=(7.5, 3.6))
    ax_img = fig.add_subplot(1, 2, 1)
    if box is not None:  # zoom first, then draw, so the lines keep their width
        x0, y0, x1, y1 = box
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
        h, w = image.shape[:2]
        left, top = max(0, int(cx - half)), max(0, int(cy - half))
        part = image[top:min(h, int(cy + half) + 1), left:min(w, int(cx + half) + 1)]
        scale = 384 / max(part.shape[:2])
        image = cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        joints2d = (np.asarray(joints2d) - [left, top]) * scale
    ax_img.imshow(overlay(image, joints2d))
    ax_img.set_axis_off()
    ax3d = fig.add_subplot(1, 2, 2, projection="3d")
    draw_skeleton_3d(ax3d, pts)
    lim = max(float(np.abs(pts).max()) if np.isfinite(pts).all() else 0.0, 900.0)
    for setter in (ax3d.set_xlim, ax3d.set_ylim, ax3d.set_zlim):
        setter(-lim, lim)
    ax3d.set_box_aspect((1, 1, 1))
    ax3d.set_xlabel("x mm")
    ax3d.set_ylabel("depth mm" if not world else "y mm")
    ax3d.set_zlabel("up mm" if not world else "z mm")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
