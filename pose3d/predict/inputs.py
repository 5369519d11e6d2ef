"""What `pose3d predict` reads: image files, folders of images and videos as frame sources
(videos decoded in a background thread), boxes per frame, intrinsics and rig cameras.

Every reader turns a bad file into a one-line ValueError / FileNotFoundError naming it.
"""

from __future__ import annotations

import csv
import os
import queue
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pose3d.cliargs import check_output_names
from pose3d.geometry import Camera
from pose3d.json_input import load_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")

Box = tuple[float, float, float, float]

# The largest frame decoded: 8K video is 33 Mpx; a 20000 x 20000 image would take 1.2 GB as
# RGB (and several times that in the crops' intermediates). Checked from the file's header.
MAX_PIXELS = 50_000_000
# How far a box may reach: its side at most this many times the frame's larger side (a
# person far larger than the frame has no content to read; the crop would pad it with black).
MAX_BOX_SCALE = 8.0
# Names a rig camera may not take: the files the rig's --out folder holds beside them.
RIG_FILES = ("predictions.json", "predictions.npz", "pose3d.png", "timing.json")


class PredictWarning(UserWarning):
    """Something the prediction went on with but the user should know (a truncated file);
    `pose3d predict` prints it as one line."""


@dataclass
class Source:
    """One input: a video, a folder of images or a single image. Frames come out as
    (name, uint8 RGB [H, W, 3]); `decode_s` adds up the time spent reading them."""

    path: Path
    kind: str  # "video" | "images"
    files: list[Path] = field(default_factory=list)  # the images, in order ("images" only)
    fps: float = 25.0
    num_frames: int = 0
    decode_s: float = 0.0

    @property
    def name(self) -> str:
        # absolute first: `.` and `..` are named by the folder they stand for
        return self.path.stem if self.path.is_file() else Path(os.path.abspath(self.path)).name

    def frames(self) -> Iterator[tuple[str, np.ndarray]]:
        """(frame name, RGB image) in order: file names for images, 0-based indices as text
        for a video."""
        if self.kind == "images":
            for path in self.files:
                start = time.perf_counter()
                image = read_image(path)
                self.decode_s += time.perf_counter() - start
                yield path.name, image
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                start = time.perf_counter()
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                self.decode_s += time.perf_counter() - start
                yield str(index), rgb
                index += 1
        finally:
            cap.release()
        if index == 0:
            raise ValueError(f"cannot decode any frame of video {self.path}")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3]. ValueError naming the file when unreadable or
    larger than `max_pixels` (from its header, before decoding); a PredictWarning when a
    JPEG ends before its end marker (the frame is partly grey)."""
    data = Path(path).read_bytes()
    check_image_size(image_size(data, path, max_pixels), path, max_pixels)
    # imread, not imdecode of `data`: OpenCV's imdecode drops a truncated JPEG, imread
    # returns the part that decodes (warned about below)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        warnings.warn(f"{path} is truncated (the JPEG has no end marker): predicted on the "
                      f"part that decodes", PredictWarning, stacklevel=2)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_size(data: bytes, path: str | Path, max_pixels: int = MAX_PIXELS
               ) -> tuple[int, int] | None:
    """(W, H) from an image file's header without decoding it (Pillow reads headers
    lazily); None when Pillow cannot tell (OpenCV may still decode it)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as exc:  # past twice Pillow's limit: past ours too
        raise ValueError(f"{path}: {exc} (pose3d predict decodes at most {max_pixels:,} "
                         f"pixels; scale it down first)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def check_image_size(size: tuple[int, int] | None, where: str | Path,
                     max_pixels: int = MAX_PIXELS) -> None:
    """ValueError (one line) for a frame of more than `max_pixels` pixels."""
    if size is not None and size[0] * size[1] > max_pixels:
        raise ValueError(f"{where} is {size[0]}x{size[1]} pixels, more than pose3d predict "
                         f"decodes ({max_pixels:,}); scale it down first")


def open_source(path: str | Path) -> Source:
    """A Source for an image file, a folder of images (sorted by name) or a video file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return Source(path, "images", files, num_frames=len(files))
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Source(path, "images", [path], num_frames=1)
    if suffix in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise ValueError(f"cannot open video {path}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        cap.release()
        check_image_size(size, f"video {path}")
        return Source(path, "video", fps=float(fps), num_frames=max(count, 0))
    raise ValueError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}) nor a video "
                     f"({', '.join(VIDEO_SUFFIXES)})")


def prefetch(items: Iterator, depth: int = 64) -> Iterator:
    """Iterate `items` in a background thread, `depth` ahead, so that decoding (and
    cropping, which OpenCV does without the GIL) overlaps the model. Errors re-raise here."""
    buf: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buf.put(("item", item))
            buf.put(("end", done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            buf.put(("error", exc))

    thread = threading.Thread(target=work, name="pose3d-predict-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buf.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buf.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


# --- boxes -------------------------------------------------------------------------------

def parse_box(text: str) -> Box:
    """'x0,y0,x1,y1' (pixels) -> a box; ValueError on anything else."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ValueError(f"a box is x0,y0,x1,y1 in pixels, got {text!r}")
    return _checked_box(values, text)


def _checked_box(values, where: str) -> Box:
    x0, y0, x1, y1 = (float(v) for v in values)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"box {where} needs x1 > x0 and y1 > y0 (finite pixels)")
    return x0, y0, x1, y1


def read_boxes(path: str | Path) -> dict[str, Box]:
    """Boxes per frame from a JSON or CSV file, keyed by frame name (an image's file name or
    a video frame's 0-based index, as text).

    JSON: a list of [x0, y0, x1, y1] (frame i gets entry i) or an object {frame: box}.
    CSV: rows `frame,x0,y0,x1,y1` (a header row is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes file not found: {path}")
    out: dict[str, Box] = {}
    is_json = path.suffix.lower() == ".json"
    data = load_json(path.read_bytes(), f"cannot read boxes from {path}") if is_json else None
    try:
        if is_json:
            items = enumerate(data) if isinstance(data, list) else data.items()
            for key, box in items:
                out[str(key)] = _checked_box(box, f"{key!s} in {path}")
        else:
            with path.open(newline="") as f:
                for row in csv.reader(f):
                    if not row or row[0].strip().lower() in ("frame", "name", "#"):
                        continue
                    out[row[0].strip()] = _checked_box(row[1:5], f"{row[0]} in {path}")
    except (ValueError, TypeError, AttributeError) as exc:
        msg = str(exc) if str(exc).startswith("box ") else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"cannot read boxes from {path}: {msg}") from None
    if not out:
        raise ValueError(f"no boxes in {path}")
    return out


def frame_box(boxes: Box | dict[str, Box] | None, name: str, image_size: tuple[int, int],
              where: str, index: int | None = None) -> Box:
    """The box of one frame (the whole frame when none is given), looked up by the frame's
    name, else its 0-based `index`; ValueError when a boxes file lacks the frame or the box
    does not overlap the W x H image."""
    w, h = image_size
    if boxes is None:
        return 0.0, 0.0, float(w), float(h)
    if isinstance(boxes, dict):
        key = name if name in boxes or index is None else str(index)
        if key not in boxes:
            raise ValueError(f"no box for frame {name} of {where}")
        boxes = boxes[key]
    x0, y0, x1, y1 = boxes
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise ValueError(f"box {x0:g},{y0:g},{x1:g},{y1:g} of frame {name} of {where} lies "
                         f"outside the {w}x{h} image")
    if max(x1 - x0, y1 - y0) > MAX_BOX_SCALE * max(w, h):
        # the square crop is cut from a padded copy of the box: a huge box, a huge copy
        raise ValueError(f"box {x0:g},{y0:g},{x1:g},{y1:g} of frame {name} of {where} is "
                         f"more than {MAX_BOX_SCALE:g} times the {w}x{h} image's size")
    return boxes


# --- cameras -----------------------------------------------------------------------------

def parse_intrinsics(text: str) -> np.ndarray:
    """'fx,fy,cx,cy' or a JSON file ({fx, fy, cx, cy} or {K: 3x3}) -> K [3, 3] pixels."""
    if Path(text).suffix.lower() == ".json" or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"intrinsics file not found: {path}")
        data = load_json(path.read_bytes(), f"cannot read intrinsics from {path}")
        try:
            if "K" in data:
                K = np.asarray(data["K"], dtype=np.float64)
            else:
                K = _k_of(*(float(data[k]) for k in ("fx", "fy", "cx", "cy")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read intrinsics from {path}: need K or fx, fy, cx, cy "
                             f"({type(exc).__name__}: {exc})") from None
    else:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4:
            raise ValueError(f"intrinsics are fx,fy,cx,cy in pixels or a JSON file, got "
                             f"{text!r}")
        K = _k_of(*values)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"intrinsics must be a 3x3 K with positive focal lengths: {text}")
    return K


def _k_of(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def read_cameras(path: str | Path) -> list[Camera]:
    """A rig's cameras from JSON: a list of {K, R, t, dist?, name?} or {"cameras": [...]},
    or an object {name: {K, R, t, dist?}}. x_cam = R X + t, world millimetres."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cameras file not found: {path}")
    data = load_json(path.read_bytes(), f"cannot read cameras from {path}")
    try:
        if isinstance(data, dict) and "cameras" in data:
            data = data["cameras"]
        if isinstance(data, dict):
            data = [{"name": str(k), **v} for k, v in data.items()]
        cams = [Camera.from_dict({"name": f"cam{i}", **d, "image_size": None,
                                  "dist": d.get("dist", np.zeros(5))})
                for i, d in enumerate(data)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read cameras from {path}: need K, R, t (and dist) per "
                         f"camera ({type(exc).__name__}: {exc})") from None
    if len(cams) < 2:
        raise ValueError(f"{path}: a rig needs at least two cameras, found {len(cams)}")
    check_output_names([c.name for c in cams], f"camera of {path}", RIG_FILES)
    check_baseline(cams, path)
    return cams


def check_baseline(cams: list[Camera], where: str | Path, min_mm: float = 1.0) -> None:
    """ValueError unless two of the cameras stand at least `min_mm` apart: from one point
    (say the same camera twice) no joint can be triangulated."""
    centres = np.array([c.center for c in cams])
    if not np.isfinite(centres).all():
        raise ValueError(f"{where}: a camera's R, t give no finite centre")
    spread = np.linalg.norm(centres[:, None] - centres[None], axis=-1).max()
    if spread < min_mm:
        raise ValueError(f"{where}: every camera stands at the same point ({spread:.3g} mm "
                         f"apart), so no joint can be triangulated; are two cameras the same?")


def read_rig_boxes(path: str | Path, cameras: list[Camera]) -> list[dict[str, Box] | None]:
    """Boxes per camera from JSON {camera name: boxes} (boxes as in `read_boxes`: a list or
    {frame: box}); a camera left out gets whole frames."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes file not found: {path}")
    data = load_json(path.read_bytes(), f"cannot read boxes from {path}")
    names = [c.name for c in cameras]
    if not isinstance(data, dict) or not set(data) <= set(names):
        raise ValueError(f"{path}: rig boxes must be an object keyed by camera name "
                         f"({', '.join(names)})")
    out: list[dict[str, Box] | None] = []
    for name in names:
        if name not in data:
            out.append(None)
            continue
        items = enumerate(data[name]) if isinstance(data[name], list) else data[name].items()
        out.append({str(k): _checked_box(b, f"{k} of camera {name} in {path}")
                    for k, b in items})
    return out
