"""What a sample read back from a conversion's resume cache may be: each field one a
converter writes, of bounded size, sound by the schema, its names plain and its meta the
unit's. A cache file is input like any other (it may be damaged or forged), and what it
holds goes into the shards, their file names and the summary's counts."""

from __future__ import annotations

import io
import re
import reprlib
from collections.abc import Mapping

import numpy as np

from pose3d.data import schema
from pose3d.data.schema import CAMERAS_FILE, JOINTS_FILE, META_FILE, WITHHELD_FILE, check_name
from pose3d.skeleton import NUM_JOINTS

# What a field may weigh, judged before its bytes are read (from the zip's directory): a
# forged file costs what it weighs, not what it claims to hold.
SMALL_FIELD_BYTES = 64 * 1024  # meta.json, cameras.npy, the joints, the key
VIEW_BYTES_PER_PIXEL = 3  # a view of S x S px: no JPEG of ours outweighs raw RGB
_VIEW = re.compile(r"view(0|[1-9][0-9]?)\.jpg")
_FILES = (META_FILE, CAMERAS_FILE, JOINTS_FILE, WITHHELD_FILE)


def member_limit(name: object, kind: object, image_size: int) -> int:
    """The most bytes field `name`, stored as `kind` ("str" or "bytes"), may hold in a
    sample of `image_size` px views; ValueError for a field no converter writes."""
    if name == "__key__" and kind == "str":
        return SMALL_FIELD_BYTES
    if kind == "bytes" and name in _FILES:
        return SMALL_FIELD_BYTES
    if kind == "bytes" and isinstance(name, str) and _VIEW.fullmatch(name):
        return VIEW_BYTES_PER_PIXEL * image_size ** 2 + SMALL_FIELD_BYTES
    raise ValueError(f"field {reprlib.repr(name)} ({reprlib.repr(kind)}) is not one a "
                     "converter writes")


def check_sample(sample: dict, want: Mapping) -> None:
    """ValueError unless `sample` is what a converter writes where `want` (what its meta
    must hold, "image_size" included) is expected: the schema's checks (meta, cameras, the
    valid views' JPEG headers at the run's size, joints), its names plain, its meta as
    expected, its key the meta's, and its 3D stored as its role keeps it."""
    try:
        decoded = schema.decode_sample(sample, want["image_size"], decode_images=False)
        meta = decoded.meta
        for kind in ("role", "subject", "action"):
            check_name(kind, meta[kind])
        for name in meta.get("camera_names") or ():
            if name != "":
                check_name("camera", name)
    except (TypeError, KeyError) as exc:  # meta fields of other types than the schema's
        raise ValueError(f"malformed meta ({type(exc).__name__}: {exc})") from None
    views = {n for n in sample if _VIEW.fullmatch(n)}
    if views != {schema.view_file(v) for v in np.flatnonzero(decoded.valid)}:
        raise ValueError(f"its views {sorted(views)} are not its valid ones")
    for k, v in want.items():
        if meta.get(k) != v:
            raise ValueError(f"meta {k} is {reprlib.repr(meta.get(k))}, this unit's is "
                             f"{reprlib.repr(v)}")
    if sample.get("__key__") != schema.make_key(meta["subject"], meta["action"],
                                                meta.get("clip", 0), meta["frame"]):
        raise ValueError(f"its key {reprlib.repr(sample.get('__key__'))} is not its meta's")
    _check_3d(sample, meta["role"])


def _check_3d(sample: dict, role: str) -> None:
    """The true 3D: joints3d for labeled and eval tuples, withheld for unlabeled ones
    (schema.encode_for_role), [17, 3] finite either way."""
    pose = WITHHELD_FILE if role == "unlabeled" else JOINTS_FILE
    other = JOINTS_FILE if pose == WITHHELD_FILE else WITHHELD_FILE
    if pose not in sample or other in sample:
        raise ValueError(f"a {role} sample holds its 3D as {pose}, alone")
    joints = np.load(io.BytesIO(sample[pose]), allow_pickle=False)
    if joints.shape != (NUM_JOINTS, 3) or not np.isfinite(joints).all():
        raise ValueError(f"its {pose} is not [{NUM_JOINTS}, 3] finite values")
