"""The shard sample: one multi-view tuple (one pose at one instant, all its views).

Every writer of pose3d shards (the synthetic studio, the Human3.6M and MPI-INF-3DHP
converters, the P-GT stage) goes through `encode_sample`; every reader through
`decode_sample`. A sample is a set of files sharing one key in a WebDataset tar:

    KEY.view0.jpg ... KEY.view{V-1}.jpg   RGB, square, the model's input size; a view that
                                          is missing (not recorded, unusable) has no file
    KEY.cameras.npy                       one record per view (a structured array [V]) with
                                          fields K [3,3], R [3,3], t [3] (world -> camera,
                                          mm), dist [5] (k1 k2 p1 p2 k3), float32: the
                                          cameras AFTER crop and resize (K matches the
                                          stored image); a missing view holds
                                          placeholder_camera(); np.load reads it
    KEY.joints3d.npy                      [17,3] float32 world mm, H36M-17 joint order;
                                          present for labeled and eval tuples, absent for
                                          unlabeled ones (their 3D is withheld)
    KEY.withheld_joints3d.npy             [17,3] float32 world mm: an unlabeled tuple's
                                          true 3D, where the source has it; read only to
                                          score the P-GT, never by a training loader
    KEY.pgt.npy                           [17,3] float32 world mm: pseudo ground truth,
                                          written by the P-GT stage
    KEY.meta.json                         {"schema": SCHEMA_VERSION, "subject", "action",
                                          "clip", "frame", "role", "camera_names" [V],
                                          "image_size" (side px), "valid" [V] bools, ...}

KEY has no dots (WebDataset splits file names at the first dot): `make_key` builds
`subject-action-clip-frame`, e.g. `S7-walking-0003-000123`. World frame: millimetres, z up.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from pose3d.geometry import Camera
from pose3d.json_input import load_json
from pose3d.skeleton import NUM_JOINTS

SCHEMA_VERSION = 1
ROLES: tuple[str, ...] = ("labeled", "unlabeled", "eval")
JPEG_QUALITY = 90
# The largest view side a sample may have (px): a model input (the paper's is 256). Checked
# from the meta and each JPEG's header before decoding, so a forged header costs nothing.
MAX_IMAGE_SIDE = 4096

# ImageNet statistics (RGB, on [0, 1] pixels): the backbones are ImageNet-pretrained.
IMAGE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize_images(images: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """uint8 (or 0-255 float) RGB images [..., 3, H, W] -> float32 normalised with
    IMAGE_MEAN / IMAGE_STD, on the images' device. inplace: reuse a float32 input."""
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"images must be [..., 3, H, W], got {list(images.shape)}")
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(3, 1, 1) * 255
    inv_std = 1 / (torch.tensor(IMAGE_STD, device=images.device).view(3, 1, 1) * 255)
    if images.dtype == torch.float32 and inplace:
        return images.sub_(mean).mul_(inv_std)
    return (images.float() - mean).mul_(inv_std)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A normalised image [3, H, W] (IMAGE_MEAN / IMAGE_STD) -> uint8 RGB [H, W, 3]: the
    inverse of `normalize_images`, for pictures."""
    x = image.detach().float().cpu()
    x = x * torch.tensor(IMAGE_STD).view(3, 1, 1) + torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy().copy()


CAMERAS_FILE = "cameras.npy"
CAMERA_DTYPE = np.dtype([("K", "<f4", (3, 3)), ("R", "<f4", (3, 3)), ("t", "<f4", (3,)),
                         ("dist", "<f4", (5,))])
JOINTS_FILE = "joints3d.npy"
PGT_FILE = "pgt.npy"
# The GT of an unlabeled tuple, kept only to score the P-GT: no training loader reads it.
WITHHELD_FILE = "withheld_joints3d.npy"
META_FILE = "meta.json"
REQUIRED_META = ("subject", "action", "frame", "role")


def view_file(index: int) -> str:
    """The file (extension) of view `index` in a sample, e.g. 'view0.jpg'."""
    return f"view{index}.jpg"


def placeholder_camera(image_size: int) -> Camera:
    """The camera stored for a missing view: finite, looking down world z from 5 m away so
    that code which forgets the valid mask gets finite numbers; never a real camera."""
    s = float(image_size)
    K = np.array([[s, 0.0, s / 2], [0.0, s, s / 2], [0.0, 0.0, 1.0]])
    return Camera(K, np.eye(3), np.array([0.0, 0.0, 5000.0]), image_size=(image_size,) * 2,
                  name="missing")


NAME_MAX_CHARS = 128
_NAME_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_name(kind: str, value: object) -> str:
    """A name read from data (a shard's meta, a manifest), checked before it can reach a
    file name: kind 'role' must be one of ROLES; any other kind (subject, action, camera,
    ...) a plain name: a non-empty str of at most NAME_MAX_CHARS characters without '/',
    '\\', control characters or '..', not starting with '.'. Returns the value; raises
    ValueError naming the kind and the value."""
    if kind == "role":
        if not isinstance(value, str) or value not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {value!r:.80}")
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string, got {value!r:.80}")
    if len(value) > NAME_MAX_CHARS:
        raise ValueError(f"{kind} is longer than {NAME_MAX_CHARS} characters: {value!r:.80}")
    if _NAME_FORBIDDEN.search(value) or ".." in value or value.startswith("."):
        raise ValueError(f"{kind} must be a plain name (no path separator, control "
                         f"character, '..' or leading '.'), got {value!r:.80}")
    return value


class SampleError(ValueError):
    """A sample that cannot be used (missing file, corrupt image, bad shapes)."""


@dataclass
class DecodedSample:
    """One tuple as arrays. images uint8 [V, H, W, 3] RGB (zeros where not valid); K, R
    [V, 3, 3], t [V, 3], dist [V, 5] float32; valid bool [V]; joints3d / pgt [17, 3] world mm
    or None; meta the parsed meta.json. Decoded with decode_images=False: images is None and
    jpegs holds each view's JPEG bytes (None where not valid), their size checked."""

    key: str
    images: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    dist: np.ndarray
    valid: np.ndarray
    joints3d: np.ndarray | None
    pgt: np.ndarray | None
    meta: dict
    jpegs: list[bytes | None] | None = None

    def cameras(self) -> list[Camera | None]:
        """The views' cameras (None where the view is not valid)."""
        size = self.images.shape[2], self.images.shape[1]
        names = self.meta.get("camera_names", [""] * len(self.valid))
        return [Camera(self.K[v], self.R[v], self.t[v], self.dist[v], size, names[v])
                if self.valid[v] else None for v in range(len(self.valid))]


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def make_key(subject: str, action: str, clip: int, frame: int) -> str:
    """`subject-action-clip-frame`; characters other than letters, digits and '_' in the
    names become '_' so that the key has no dots and splits unambiguously on '-'."""
    parts = [_KEY_UNSAFE.sub("_", str(s)) for s in (subject, action)]
    return f"{parts[0]}-{parts[1]}-{int(clip):04d}-{int(frame):06d}"


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32))
    return buf.getvalue()


def _check_pose(name: str, pose) -> np.ndarray:
    arr = np.asarray(pose, dtype=np.float32)
    if arr.shape != (NUM_JOINTS, 3):
        raise ValueError(f"{name} must have shape [{NUM_JOINTS}, 3], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values")
    return arr


def _check_views(images: Sequence, cameras: Sequence) -> int:
    if len(images) == 0 or len(images) != len(cameras):
        raise ValueError(f"need one camera per view and at least one view, got "
                         f"{len(images)} images and {len(cameras)} cameras")
    sides = set()
    for v, (img, cam) in enumerate(zip(images, cameras)):
        if img is None:
            continue
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
                and img.shape[2] == 3 and img.shape[0] == img.shape[1]):
            raise ValueError(f"view {v}: image must be a square HxWx3 uint8 array, got "
                             f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
        if cam is not None and cam.image_size is not None and \
                tuple(cam.image_size) != (img.shape[1], img.shape[0]):
            raise ValueError(f"view {v}: camera image_size {cam.image_size} does not match the "
                             f"image {img.shape[1]}x{img.shape[0]} (crop the camera too)")
        sides.add(img.shape[0])
    if len(sides) != 1:
        raise ValueError(f"all valid views must have the same size, got sides {sorted(sides)}"
                         if sides else "a sample needs at least one valid view")
    return sides.pop()


def encode_sample(images: Sequence[np.ndarray | None], cameras: Sequence[Camera | None],
                  joints3d: np.ndarray | None, meta: dict, *, pgt: np.ndarray | None = None,
                  key: str | None = None, jpeg_quality: int = JPEG_QUALITY) -> dict:
    """One tuple -> the dict a WebDataset `ShardWriter.write` takes (bytes per file).

    images: V RGB arrays [S, S, 3] uint8 (S = input size), None for a missing view.
    cameras: V Cameras after crop and resize (K matches the image), None for a missing view.
    joints3d: [17, 3] world mm, or None for an unlabeled tuple. pgt: [17, 3] or None.
    meta: at least subject, action, frame, role; clip defaults to 0; anything JSON-able
    extra is kept. key: defaults to make_key(subject, action, clip, frame).
    """
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta is missing {missing}")
    if meta["role"] not in ROLES:
        raise ValueError(f"meta role must be one of {ROLES}, got {meta['role']!r}")
    side = _check_views(images, cameras)
    valid = [img is not None and cam is not None for img, cam in zip(images, cameras)]
    filler = placeholder_camera(side)
    cams = [cam if ok else filler for cam, ok in zip(cameras, valid)]
    key = key or make_key(meta["subject"], meta["action"], meta.get("clip", 0), meta["frame"])
    if "." in key:
        raise ValueError(f"sample key must not contain '.', got {key!r}")

    out: dict = {"__key__": key}
    for v, img in enumerate(images):
        if valid[v]:
            out[view_file(v)] = _encode_jpeg(img, jpeg_quality)
    records = np.zeros(len(cams), CAMERA_DTYPE)
    for name in CAMERA_DTYPE.names:
        records[name] = np.stack([getattr(c, name) for c in cams])
    buf = io.BytesIO()
    np.save(buf, records)  # one small array: several times faster to read than an npz
    out[CAMERAS_FILE] = buf.getvalue()
    if joints3d is not None:
        out[JOINTS_FILE] = _npy_bytes(_check_pose("joints3d", joints3d))
    if pgt is not None:
        out[PGT_FILE] = _npy_bytes(_check_pose("pgt", pgt))
    full_meta = {"schema": SCHEMA_VERSION, "clip": 0, **meta, "image_size": side,
                 "valid": valid,
                 "camera_names": [c.name if c is not None else "" for c in cameras]}
    out[META_FILE] = json.dumps(full_meta).encode("utf-8")
    return out


def encode_for_role(images: Sequence[np.ndarray | None], cameras: Sequence[Camera | None],
                    joints3d: np.ndarray, meta: dict, **kwargs) -> dict:
    """`encode_sample` of a tuple whose true 3D is known: stored as joints3d for labeled and
    eval tuples; for an unlabeled one withheld (WITHHELD_FILE), so training never sees it
    while the P-GT stage can score its labels against it."""
    if meta.get("role") != "unlabeled":
        return encode_sample(images, cameras, joints3d, meta, **kwargs)
    sample = encode_sample(images, cameras, None, meta, **kwargs)
    sample[WITHHELD_FILE] = _npy_bytes(_check_pose("withheld joints3d", joints3d))
    return sample


def _decode_jpeg(data: bytes, where: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SampleError(f"{where}: corrupt JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header (SOFn), without decoding; None when the
    bytes are no JPEG or end before the frame header."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        # SOF0-SOF15 hold the size; C4 (DHT), C8 (JPG) and CC (DAC) share their range
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            return (int.from_bytes(data[i + 7:i + 9], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _load_array(data: bytes, where: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises several types for corrupt bytes
        raise SampleError(f"{where}: unreadable array ({exc})") from exc
    if arr.shape != shape:
        raise SampleError(f"{where}: expected shape {list(shape)}, got {list(arr.shape)}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise SampleError(f"{where}: non-finite values")
    return arr


def _read_meta(sample: dict, key: str) -> dict:
    if META_FILE not in sample:
        raise SampleError(f"{key}: no {META_FILE}")
    try:
        meta = load_json(sample[META_FILE], f"{key}.{META_FILE}")
    except ValueError as exc:
        raise SampleError(f"{key}: unreadable {META_FILE} ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("valid"), list) or \
            not meta["valid"] or any(k not in meta for k in REQUIRED_META):
        raise SampleError(f"{key}: {META_FILE} lacks valid / subject / action / frame / role")
    try:
        _check_meta_fields(meta)
    except ValueError as exc:
        raise SampleError(f"{key}: {META_FILE}: {exc}") from None
    if meta.get("schema", 0) > SCHEMA_VERSION:
        raise SampleError(f"{key}: schema {meta['schema']} is newer than {SCHEMA_VERSION}")
    return meta


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta_fields(meta: dict) -> None:
    """ValueError naming the first field of a parsed meta.json whose type or value is not
    what encode_sample writes: a forged file reaches comparisons, int() and file names."""
    for field in ("schema", "image_size", "frame", "clip"):
        if field in meta and not (_is_int(meta[field]) and meta[field] >= 0):
            raise ValueError(f"{field} must be a non-negative integer, got "
                             f"{meta[field]!r:.80}")
    if "image_size" not in meta or meta["image_size"] == 0:
        raise ValueError("image_size must be a positive integer")
    if not all(isinstance(v, bool) for v in meta["valid"]):
        raise ValueError("valid must be a list of booleans")
    for field in ("role", "subject", "action"):
        check_name(field, meta[field])
    names = meta.get("camera_names", [""] * len(meta["valid"]))
    if not isinstance(names, list) or len(names) != len(meta["valid"]):
        raise ValueError("camera_names must be a list with one name per view")
    for name in names:
        if name != "":  # a missing view's
            check_name("camera name", name)


def _read_cameras(sample: dict, key: str, num_views: int) -> dict[str, np.ndarray]:
    if CAMERAS_FILE not in sample:
        raise SampleError(f"{key}: no {CAMERAS_FILE}")
    try:
        records = np.load(io.BytesIO(sample[CAMERAS_FILE]), allow_pickle=False)
    except Exception as exc:  # numpy raises several types for corrupt bytes
        raise SampleError(f"{key}: unreadable {CAMERAS_FILE} ({exc})") from exc
    if records.dtype != CAMERA_DTYPE or records.shape != (num_views,):
        raise SampleError(f"{key}: {CAMERAS_FILE} must hold {num_views} camera records "
                          f"{CAMERA_DTYPE}, got {records.shape} {records.dtype}")
    cams = {name: np.ascontiguousarray(records[name]) for name in CAMERA_DTYPE.names}
    for name, arr in cams.items():
        if not np.isfinite(arr).all():
            raise SampleError(f"{key}: camera {name} has non-finite values")
    return cams


def decode_sample(sample: dict, image_size: int | None = None,
                  decode_images: bool = True) -> DecodedSample:
    """A raw WebDataset sample (file extension -> bytes, plus __key__) -> DecodedSample.
    Raises SampleError naming the problem for a sample that cannot be used: a valid view
    without its JPEG, a corrupt JPEG, missing or malformed cameras or meta, non-finite
    cameras / joints3d / pgt, or (when `image_size` is given: the dataset's side in px)
    images of another size. Each view's size is read from its JPEG header and checked
    (against the meta's side, at most MAX_IMAGE_SIDE) before anything is decoded.
    decode_images=False keeps the JPEG bytes for decoding elsewhere
    (pose3d.data.device_decode)."""
    key = str(sample.get("__key__", "?"))
    meta = _read_meta(sample, key)
    valid = np.array(meta["valid"], dtype=bool)
    cams = _read_cameras(sample, key, len(valid))
    side = meta["image_size"]
    if image_size is not None and side != image_size:
        raise SampleError(f"{key}: {side} px images, but the dataset's are {image_size} px")
    if side > MAX_IMAGE_SIDE:  # where no size is asked for (previews, checks): still bounded
        raise SampleError(f"{key}: {side} px images, more than a model input ({MAX_IMAGE_SIDE})")
    images, jpegs = None, [None] * len(valid)
    for v in np.flatnonzero(valid):
        name = view_file(v)
        if name not in sample:
            raise SampleError(f"{key}: view {v} is marked valid but {name} is missing")
        # the header's size first: a few KB can claim 30000 x 30000 px (gigabytes decoded)
        wh = jpeg_size(sample[name])
        if wh is None:
            raise SampleError(f"{key}.{name}: corrupt JPEG")
        if wh != (side, side):
            raise SampleError(f"{key}.{name}: image is {wh[0]}x{wh[1]}, meta says {side}")
        if not decode_images:
            jpegs[v] = sample[name]
            continue
        img = _decode_jpeg(sample[name], f"{key}.{name}")
        if img.shape[:2] != (side, side):
            raise SampleError(f"{key}.{name}: image is {img.shape[1]}x{img.shape[0]}, "
                              f"meta says {side}")
        if images is None:
            images = np.zeros((len(valid), side, side, 3), np.uint8)
        images[v] = img
    if images is None and not any(j is not None for j in jpegs):
        raise SampleError(f"{key}: no valid view")
    joints = _load_array(sample[JOINTS_FILE], f"{key}.{JOINTS_FILE}", (NUM_JOINTS, 3)) \
        if JOINTS_FILE in sample else None
    pgt = _load_array(sample[PGT_FILE], f"{key}.{PGT_FILE}", (NUM_JOINTS, 3)) \
        if PGT_FILE in sample else None
    return DecodedSample(key, images, cams["K"], cams["R"], cams["t"], cams["dist"], valid,
                         joints, pgt, meta, None if decode_images else jpegs)


def raw_truth(sample: dict) -> np.ndarray | None:
    """The true 3D [17, 3] float32 world mm of a raw sample if it carries one: its joints3d,
    or the withheld truth of an unlabeled tuple (for scoring P-GT and for the Oracle arm
    only; the training loader never reads it)."""
    for name in (JOINTS_FILE, WITHHELD_FILE):
        if name in sample:
            return np.load(io.BytesIO(sample[name]), allow_pickle=False).astype(np.float32)
    return None


def with_pgt(sample: dict, pgt: np.ndarray) -> dict:
    """A raw sample with its pseudo ground truth [17, 3] world mm added (or replaced); the
    other files are kept byte for byte (for the P-GT stage, which rewrites shards)."""
    out = {k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"}
    out[PGT_FILE] = _npy_bytes(_check_pose("pgt", pgt))
    return out
