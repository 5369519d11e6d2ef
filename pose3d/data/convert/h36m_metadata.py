"""Human3.6M's `metadata.xml` (shipped with the release's code): which file holds which
(action, subaction) per subject, and the calibration the published one comes from.

    <mapping>      rows of cells: a header (two cells, then the subject names S1 ... S11),
                   then action id, subaction id, and the file prefix per subject
    <actionnames>  one element per action id (1-based)
    <dbcameras><index2id>  the camera ids in index order
    <w0>           '[ numbers ]': for camera c (0-3) and subject s (1-11), six numbers at
                   6 * (11 c + s - 1): rotation angles a0 a1 a2 (radians) and the camera
                   centre (world mm); then per camera, at 264 + 9 c: fx fy cx cy k1 k2 k3
                   p1 p2. The world -> camera rotation is (Rx(-a0) Ry(a1) Rz(-a2))^T.

The converter uses the calibration in pose3d.geometry.h36m_rig; this file only cross-checks
it, so a release whose cameras differ is caught before anything is converted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose3d.geometry import Camera

NUM_SUBJECTS = 11
EXTRINSIC_BLOCK = 6
INTRINSIC_OFFSET = 264
INTRINSIC_BLOCK = 9
# Tolerances of the cross-check: the published numbers are float32 copies of these.
CENTRE_TOL_MM = 1.0
ROTATION_TOL = 1e-3  # max abs difference of matrix entries
FOCAL_TOL_PX = 0.05


@dataclass
class Metadata:
    subjects: list[str]
    mapping: dict[str, dict[tuple[str, int], str]]  # subject -> (action, subaction) -> prefix
    camera_ids: list[str]
    w0: np.ndarray


def _element(root: ET.Element, name: str, path: Path) -> ET.Element:
    found = root.find(name)
    if found is None:
        raise ValueError(f"{path}: no <{name}> element (not Human3.6M's metadata.xml?)")
    return found


def read_metadata(path: Path) -> Metadata:
    """Parse metadata.xml; ValueError naming the file and what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(f"Human3.6M metadata file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not readable XML ({exc})") from None
    actions = [(e.text or "").strip() for e in _element(root, "actionnames", path)]
    camera_ids = [(e.text or "").strip() for e in _element(root, "dbcameras/index2id", path)]
    rows = [[(td.text or "").strip() for td in tr] for tr in _element(root, "mapping", path)]
    if not rows or len(rows[0]) < 3:
        raise ValueError(f"{path}: <mapping> has no header row with subject names")
    subjects = rows[0][2:]
    mapping: dict[str, dict[tuple[str, int], str]] = {s: {} for s in subjects}
    for row in rows[1:]:
        if len(row) < 2 or not (row[0].isdigit() and row[1].isdigit()):
            continue
        action_id, subaction = int(row[0]), int(row[1])
        if not 1 <= action_id <= len(actions):
            raise ValueError(f"{path}: <mapping> names action {action_id}, <actionnames> has "
                             f"{len(actions)}")
        for subject, prefix in zip(subjects, row[2:]):
            if prefix:
                mapping[subject][actions[action_id - 1], subaction] = prefix
    text = (_element(root, "w0", path).text or "").strip().strip("[]")
    try:
        w0 = np.array([float(v) for v in text.split()])
    except ValueError:
        raise ValueError(f"{path}: <w0> must be '[ numbers ]'") from None
    need = INTRINSIC_OFFSET + INTRINSIC_BLOCK * len(camera_ids)
    if len(w0) < need:
        raise ValueError(f"{path}: <w0> holds {len(w0)} numbers, need {need} for "
                         f"{len(camera_ids)} cameras")
    return Metadata(subjects, mapping, camera_ids, w0)


def rotation_from_angles(a0: float, a1: float, a2: float) -> np.ndarray:
    """metadata.xml's angles -> the world -> camera rotation [3, 3]."""
    x, y, z = -a0, a1, -a2
    rx = np.array([[1, 0, 0], [0, np.cos(x), np.sin(x)], [0, -np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), np.sin(z), 0], [-np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return (rx @ ry @ rz).T


def metadata_camera(meta: Metadata, subject: str, camera_id: str) -> dict[str, np.ndarray]:
    """R [3,3] world -> camera, centre [3] world mm, K [3,3], dist [5] (k1 k2 p1 p2 k3)."""
    c = meta.camera_ids.index(camera_id)
    s = int(subject.lstrip("S"))
    start = EXTRINSIC_BLOCK * (NUM_SUBJECTS * c + s - 1)
    a0, a1, a2, *centre = meta.w0[start:start + EXTRINSIC_BLOCK]
    start = INTRINSIC_OFFSET + INTRINSIC_BLOCK * c
    fx, fy, cx, cy, k1, k2, k3, p1, p2 = meta.w0[start:start + INTRINSIC_BLOCK]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return {"R": rotation_from_angles(a0, a1, a2), "centre": np.array(centre), "K": K,
            "dist": np.array([k1, k2, p1, p2, k3])}


def check_cameras(meta: Metadata, path: Path, subject: str, cameras: list[Camera]) -> None:
    """Raise ValueError (one line, naming the file, subject and camera) unless metadata.xml
    describes `cameras` (full-frame, published calibration) within the tolerances."""
    for camera in cameras:
        if camera.name not in meta.camera_ids:
            raise ValueError(f"{path}: camera {camera.name} is not in <dbcameras> "
                             f"({', '.join(meta.camera_ids)})")
        theirs = metadata_camera(meta, subject, camera.name)
        centre = -camera.R.T @ camera.t
        problems = []
        if np.abs(theirs["centre"] - centre).max() > CENTRE_TOL_MM:
            problems.append(f"centre {np.round(theirs['centre'], 1).tolist()} mm vs "
                            f"{np.round(centre, 1).tolist()}")
        # The file documents no convention; its decoding (as h36m-fetch and mmhuman3d port it)
        # gives world -> camera, and the transpose is accepted too so that an error in that
        # reading cannot block a run. The centre check alone tells subjects and cameras apart.
        r_error = min(np.abs(theirs["R"] - camera.R).max(),
                      np.abs(theirs["R"].T - camera.R).max())
        if r_error > ROTATION_TOL:
            problems.append(f"rotation differs by up to {r_error:.3g}")
        k_error = np.abs(theirs["K"] - camera.K).max()
        if k_error > FOCAL_TOL_PX:
            problems.append(f"intrinsics differ by up to {k_error:.3g} px")
        if problems:
            raise ValueError(f"{path}: camera {camera.name} of {subject} does not match the "
                             f"published calibration ({'; '.join(problems)})")
