"""A tiny Human3.6M official release, written in the release's own formats: D3_Positions CDF
files (cdflib), mp4 videos (OpenCV) whose frames carry markers at the projected pelvis and
head, ground_truth_bb boxes as MATLAB v7.3 (HDF5) files of mask references, and a
metadata.xml. Frames are small (VIDEO px square) with the published intrinsics scaled to
match; `real_size=True` writes the calibrated 1000 x 1000 / 1000 x 1002 frames instead.

The release's defects are planted: S5 Photo's videos are two frames longer than its CDF,
S9 Greeting 1's CDF two frames longer than its videos, S11 Directions' camera 54138969 video
is corrupt, S9's damaged Greeting-2 is there, S5 spells Photo / WalkDog.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import h5py
import numpy as np
from cdflib.cdfwrite import CDF
from convert_data import standing_pose

from pose3d.geometry import Camera, h36m_cameras

VIDEO = 128  # fixture video side (the release's are 1000)
FRAMES = 8
SPLITS = {"labeled": ("S1",), "unlabeled": ("S5",), "eval": ("S9", "S11")}
# subject -> {file prefix: (CDF frames, video frames)}
TAKES = {
    "S1": {"Directions 1": (FRAMES, FRAMES), "TakingPhoto": (FRAMES, FRAMES)},
    "S5": {"Photo": (FRAMES, FRAMES + 2), "WalkDog 1": (FRAMES, FRAMES)},
    "S9": {"Greeting": (FRAMES, FRAMES), "Greeting 1": (FRAMES + 2, FRAMES)},
    "S11": {"Directions": (FRAMES, FRAMES), "Directions 1": (FRAMES, FRAMES)},
}
BOXES_FOR = ("S1",)  # subjects with ground_truth_bb files
CORRUPT = ("S11", "Directions", "54138969")
PELVIS_COLOUR = (255, 255, 255)  # BGR
HEAD_COLOUR = (0, 255, 0)
HEAD = 10  # our head joint
# metadata.xml action ids (1-based) and the (action, subaction) -> prefix per subject; S9's
# takes are numbered against file-name order, so the metadata's numbering is observable.
ACTION_NAMES = ("Directions", "Greeting", "TakingPhoto", "WalkingDog")
MAPPING = {
    "S1": {("Directions", 1): "Directions 1", ("TakingPhoto", 1): "TakingPhoto"},
    "S5": {("TakingPhoto", 1): "Photo", ("WalkingDog", 1): "WalkDog 1"},
    "S9": {("Greeting", 1): "Greeting 1", ("Greeting", 2): "Greeting"},
    "S11": {("Directions", 1): "Directions", ("Directions", 2): "Directions 1"},
}

# The release's 32 joints (D3_Positions `Pose` [frames, 96]), named as in its motion-capture
# skeleton (the release's BVH-style hierarchy; the names 3d-pose-baseline's data_utils
# abbreviates). Written here, not taken from pose3d, so the converter's map is checked
# against the release's layout rather than against itself.
RELEASE_JOINTS: tuple[str, ...] = (
    "Hips", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "Site",
    "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "Site",
    "Spine", "Spine1", "Neck", "Head", "Site",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftHandThumb", "Site",
    "L_Wrist_End", "Site",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightHandThumb", "Site",
    "R_Wrist_End", "Site",
)
# Our 17 joints, in our order, by the release joint that is each: the release's "Spine" and
# the two clavicles ("LeftShoulder", "RightShoulder") sit at zero offset on their parents;
# our spine is its Spine1, thorax its Neck, neck/nose its Head and head the Head's end site.
OURS_IN_RELEASE: tuple[tuple[str, str], ...] = (
    ("pelvis", "Hips"),
    ("right_hip", "RightUpLeg"), ("right_knee", "RightLeg"), ("right_ankle", "RightFoot"),
    ("left_hip", "LeftUpLeg"), ("left_knee", "LeftLeg"), ("left_ankle", "LeftFoot"),
    ("spine", "Spine1"), ("thorax", "Neck"), ("neck", "Head"), ("head", "Head/Site"),
    ("left_shoulder", "LeftArm"), ("left_elbow", "LeftForeArm"), ("left_wrist", "LeftHand"),
    ("right_shoulder", "RightArm"), ("right_elbow", "RightForeArm"),
    ("right_wrist", "RightHand"),
)


def release_index(name: str) -> int:
    """The release's index of a joint name; "X/Site" is the end site right after X."""
    parent, _, site = name.partition("/")
    i = RELEASE_JOINTS.index(parent) + (1 if site else 0)
    assert RELEASE_JOINTS[i] == (site or parent), name
    return i


def pose_at(subject: str, prefix: str, frame: int) -> np.ndarray:
    """Our 17 joints [17, 3] world mm: a figure stepping 120 mm a frame (cycling), so a
    wrong frame lands its markers several pixels away."""
    offset = 37.0 * (len(subject) + len(prefix))
    return standing_pose(120.0 * (frame % 5) - 240.0 + offset)


def fixture_cameras(subject: str, real_size: bool = False) -> list[Camera]:
    """The published rig of `subject` at the fixture's video size (K rows scaled)."""
    out = []
    for c in h36m_cameras(subject):
        if real_size:
            out.append(c)
            continue
        w, h = c.image_size
        K = np.diag([VIDEO / w, VIDEO / h, 1.0]) @ c.K
        out.append(Camera(K, c.R, c.t, c.dist, (VIDEO, VIDEO), c.name))
    return out


def write_cdf(path: Path, poses17: np.ndarray, variable: str = "Pose") -> None:
    """[frames, 17, 3] (our order) -> a D3_Positions CDF: `Pose` [1, frames, 96] float32,
    our joints at the release's indices (OURS_IN_RELEASE), the others at the pelvis."""
    full = np.repeat(poses17[:, :1], len(RELEASE_JOINTS), axis=1).copy()
    full[:, [release_index(theirs) for _, theirs in OURS_IN_RELEASE]] = poses17
    data = full.reshape(1, len(poses17), 96).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    cdf = CDF(str(path))
    cdf.write_var({"Variable": variable, "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": [len(poses17), 96]}, var_data=data)
    cdf.close()


def _disc(image: np.ndarray, point: np.ndarray, colour: tuple, radius: int) -> None:
    cv2.circle(image, (int(round(point[0] * 16)), int(round(point[1] * 16))), radius * 16,
               colour, -1, cv2.LINE_AA, shift=4)


def write_video(path: Path, camera: Camera, poses: list[np.ndarray]) -> None:
    """One frame per pose: dark, a white disc at the projected pelvis, a green one at the
    head (distorted projection, as the real lens records it)."""
    w, h = camera.image_size
    radius = max(3, w // 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50, (w, h))
    assert writer.isOpened(), path
    for pose in poses:
        image = np.full((h, w, 3), 30, np.uint8)
        uv = camera.project(pose)
        _disc(image, uv[0], PELVIS_COLOUR, radius)
        _disc(image, uv[HEAD], HEAD_COLOUR, radius)
        writer.write(image)
    writer.release()


def mask_rect(camera: Camera, pose: np.ndarray) -> tuple[int, int, int, int]:
    """The ground-truth box written for a frame: the projected joints, 15% margin, a tall
    rectangle (x0, y0, x1, y1) in whole pixels, clipped to the frame."""
    uv = camera.project(pose)
    lo, hi = uv.min(0), uv.max(0)
    pad = 0.15 * (hi - lo)
    w, h = camera.image_size
    x0, y0 = np.floor(np.maximum(lo - pad, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(hi + pad, [w, h])).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def write_boxes(path: Path, camera: Camera, poses: list[np.ndarray]) -> None:
    """ground_truth_bb: MATLAB v7.3 (HDF5 with the 512-byte MATLAB header); `Masks` [n, 1]
    object references to [W, H] uint8 masks (MATLAB's column-major order), 1 in the box."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = camera.image_size
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        handles = []
        for i, pose in enumerate(poses):
            x0, y0, x1, y1 = mask_rect(camera, pose)
            mask = np.zeros((h, w), np.uint8)
            mask[y0:y1, x0:x1] = 1
            handles.append(refs.create_dataset(f"m{i}", data=mask.T).ref)
        masks = f.create_dataset("Masks", (len(poses), 1), dtype=h5py.ref_dtype)
        for i, ref in enumerate(handles):
            masks[i, 0] = ref
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: fixture HDF5 schema "
                 b"1.00 .".ljust(116))


def angles_from_rotation(R: np.ndarray) -> tuple[float, float, float]:
    """metadata.xml's (a0, a1, a2) for a world -> camera R: R^T = Rx(x) Ry(y) Rz(z) with
    x = -a0, y = a1, z = -a2, solved from R^T's first row and last column."""
    M = R.T
    y = np.arcsin(np.clip(M[0, 2], -1, 1))
    z = np.arctan2(M[0, 1], M[0, 0])
    x = np.arctan2(M[1, 2], M[2, 2])
    return -x, y, -z


INTRINSICS = ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "p1", "p2")  # <w0>'s order per camera


def write_metadata(path: Path, shift_centre: tuple[str, str, float] | None = None,
                   swap_rotation: tuple[str, str] | None = None,
                   shift_intrinsic: tuple[str, str, float] | None = None) -> None:
    """metadata.xml with the mapping above and <w0> from the published rig, to test the
    cross-check: shift_centre (subject, camera, mm) moves one camera centre along x,
    swap_rotation (subject, camera) gives that camera S11's rotation for camera 0,
    shift_intrinsic (camera, one of INTRINSICS, amount) adds to one intrinsic number."""
    root = ET.Element("metadata")
    mapping = ET.SubElement(root, "mapping")
    subjects = [f"S{i}" for i in range(1, 12)]
    header = ET.SubElement(mapping, "tr")
    for text in ["", "", *subjects]:
        ET.SubElement(header, "td").text = text
    for a, action in enumerate(ACTION_NAMES, start=1):
        for sub in (1, 2):
            row = ET.SubElement(mapping, "tr")
            cells = [str(a), str(sub)] + [MAPPING.get(s, {}).get((action, sub), "")
                                          for s in subjects]
            for text in cells:
                ET.SubElement(row, "td").text = text
    names = ET.SubElement(root, "actionnames")
    for action in ACTION_NAMES:
        ET.SubElement(names, "item").text = action
    index2id = ET.SubElement(ET.SubElement(root, "dbcameras"), "index2id")
    cams = h36m_cameras("S1")
    for c in cams:
        ET.SubElement(index2id, "item").text = c.name
    w0 = np.zeros(264 + 9 * 4)
    for s, subject in enumerate(subjects, start=1):
        if subject not in MAPPING:
            continue
        for c, cam in enumerate(h36m_cameras(subject)):
            centre = -cam.R.T @ cam.t
            if shift_centre and shift_centre[:2] == (subject, cam.name):
                centre = centre + [shift_centre[2], 0, 0]
            R = h36m_cameras("S11")[0].R if swap_rotation == (subject, cam.name) else cam.R
            w0[6 * (11 * c + s - 1):6 * (11 * c + s)] = [*angles_from_rotation(R), *centre]
    for c, cam in enumerate(cams):
        k1, k2, p1, p2, k3 = cam.dist
        K = cam.K
        w0[264 + 9 * c:264 + 9 * (c + 1)] = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], k1, k2, k3,
                                             p1, p2]
        if shift_intrinsic and shift_intrinsic[0] == cam.name:
            w0[264 + 9 * c + INTRINSICS.index(shift_intrinsic[1])] += shift_intrinsic[2]
    ET.SubElement(root, "w0").text = "[" + " ".join(f"{v:.10g}" for v in w0) + "]"
    ET.ElementTree(root).write(path)


def build_release(root: Path, real_size: bool = False,
                  takes: dict[str, dict[str, tuple[int, int]]] | None = None) -> dict:
    """Write the release under `root`; returns {(subject, prefix, frame): pose [17, 3]}."""
    poses = {}
    for subject, seqs in (takes or TAKES).items():
        cameras = fixture_cameras(subject, real_size)
        for prefix, (n_cdf, n_video) in seqs.items():
            seq = [pose_at(subject, prefix, f) for f in range(max(n_cdf, n_video))]
            poses.update({(subject, prefix, f): p for f, p in enumerate(seq[:n_cdf])})
            write_cdf(root / subject / "MyPoseFeatures" / "D3_Positions" / f"{prefix}.cdf",
                      np.stack(seq[:n_cdf]))
            for cam in cameras:
                video = root / subject / "Videos" / f"{prefix}.{cam.name}.mp4"
                if (subject, prefix, cam.name) == CORRUPT:
                    video.parent.mkdir(parents=True, exist_ok=True)
                    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))  # truncated
                    continue
                write_video(video, cam, seq[:n_video])
                if subject in BOXES_FOR:
                    write_boxes(root / subject / "MySegmentsMat" / "ground_truth_bb" /
                                f"{prefix}.{cam.name}.mat", cam, seq[:n_video])
    write_metadata(root / "metadata.xml")
    return poses
