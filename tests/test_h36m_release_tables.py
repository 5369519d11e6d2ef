"""Human3.6M's official release against its own documents rather than against pose3d's
code (issue 27): the 32 -> 17 joint map against the release's joint names and hierarchy,
and the metadata.xml cross-check against every intrinsic of the published calibration."""

from __future__ import annotations

import numpy as np
import pytest
from h36m_release_data import (
    INTRINSICS,
    OURS_IN_RELEASE,
    RELEASE_JOINTS,
    release_index,
    write_cdf,
    write_metadata,
)

from pose3d.data.convert.h36m_metadata import check_cameras, read_metadata
from pose3d.data.convert.h36m_release import read_poses
from pose3d.geometry import h36m_cameras
from pose3d.skeleton import BONES, JOINT_NAMES
from pose3d.skeleton.mappings import H36M_RELEASE_NUM_JOINTS, H36M_RELEASE_TO_H36M

# The release skeleton's parents (its hierarchy, as VideoPose3D's h36m_skeleton lists it).
RELEASE_PARENTS = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19,
                   20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30)


def _ancestors(i: int) -> list[int]:
    out = []
    while RELEASE_PARENTS[i] >= 0:
        i = RELEASE_PARENTS[i]
        out.append(i)
    return out


def test_the_tables_here_agree_with_the_release_hierarchy():
    """The hand-written tables are consistent: 32 names, sides matching, and each of our
    bones a chain of the release's hierarchy (parent above child; the release hangs its
    clavicles from Spine1, at the Neck's place, so our thorax -> shoulder bones start
    one joint above our thorax)."""
    assert len(RELEASE_JOINTS) == len(RELEASE_PARENTS) == H36M_RELEASE_NUM_JOINTS == 32
    assert tuple(ours for ours, _ in OURS_IN_RELEASE) == JOINT_NAMES
    for ours, theirs in OURS_IN_RELEASE:
        side = ours.split("_")[0]
        if side in ("left", "right"):
            assert theirs.lower().startswith(side), (ours, theirs)
    index = [release_index(theirs) for _, theirs in OURS_IN_RELEASE]
    for parent, child in BONES:
        above = _ancestors(index[child])
        assert index[parent] in above or (JOINT_NAMES[parent] == "thorax"
                                          and RELEASE_PARENTS[index[parent]] in above), (
            JOINT_NAMES[parent], JOINT_NAMES[child])


def test_release_map_picks_the_documented_joints():
    """Entry j of the converter's map is the release joint that is our joint j, by name."""
    expected = tuple(release_index(theirs) for _, theirs in OURS_IN_RELEASE)
    named = {JOINT_NAMES[j]: RELEASE_JOINTS[i] for j, i in enumerate(H36M_RELEASE_TO_H36M)}
    assert H36M_RELEASE_TO_H36M == expected, named


def test_read_poses_returns_our_joints_from_a_release_cdf(tmp_path):
    """A CDF written through the table above reads back as our 17 joints in our order."""
    poses = np.random.default_rng(0).uniform(-1000, 1000, (3, len(JOINT_NAMES), 3))
    path = tmp_path / "Walking.cdf"
    write_cdf(path, poses)
    np.testing.assert_allclose(read_poses(path), poses.astype(np.float32), atol=1e-9)


# The published intrinsics of Human3.6M camera 54138969 (full frame, px), from the dataset's
# calibration as VideoPose3D's h36m_cameras_intrinsic_params lists it.
PUBLISHED_54138969 = {"fx": 1145.04940459, "fy": 1143.78109251, "cx": 512.54150496,
                      "cy": 515.45148698}


def test_fixture_metadata_matches_the_published_intrinsics(tmp_path):
    path = tmp_path / "metadata.xml"
    write_metadata(path)
    meta = read_metadata(path)
    start = 264 + 9 * meta.camera_ids.index("54138969")
    written = dict(zip(INTRINSICS, meta.w0[start:start + 9]))
    for name, value in PUBLISHED_54138969.items():
        assert written[name] == pytest.approx(value, abs=1e-3), name  # float32 copies
    check_cameras(meta, path, "S9", h36m_cameras("S9"))  # the unchanged file passes


@pytest.mark.parametrize("field", ["fx", "fy", "cx", "cy"])
@pytest.mark.parametrize("px", [10.0, -1.0])
def test_metadata_camera_with_any_other_intrinsic_is_refused(tmp_path, field, px):
    """A camera whose focal length or principal point in metadata.xml differs from the
    published calibration (by 10 px, or 1 px) is named, with the file and subject."""
    path = tmp_path / "metadata.xml"
    write_metadata(path, shift_intrinsic=("55011271", field, px))
    meta = read_metadata(path)
    with pytest.raises(ValueError) as exc:
        check_cameras(meta, path, "S9", h36m_cameras("S9"))
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    assert "camera 55011271 of S9 does not match" in message and "intrinsics" in message


def test_metadata_intrinsics_within_float_rounding_pass(tmp_path):
    path = tmp_path / "metadata.xml"
    write_metadata(path, shift_intrinsic=("55011271", "cx", 0.01))
    check_cameras(read_metadata(path), path, "S9", h36m_cameras("S9"))
