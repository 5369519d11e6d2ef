"""The resume cache of `pose3d convert h36m` (pose3d.data.convert.cache) is keyed by what
shapes a sample: another value of any such option, other camera distortion (the crops are
undistorted through it) or other converter code gives every sequence it shapes another
cache entry, so a rerun never reads samples cut another way (issue 33 item 4). The cases
are found from the options object: an option without a case, or without a reason why it
shapes no sample, fails."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np
import pytest
from h36m_release_data import SPLITS, build_release

from pose3d.data.convert import crop, h36m_official
from pose3d.data.convert.h36m_official import H36MReleaseOptions, plan_release
from pose3d.geometry import CAMERA_NAMES, Camera

ROLES = tuple(SPLITS)
# option -> (another value, the roles whose samples it shapes)
SHAPING = {
    "image_size": (32, ROLES),
    "bbox_scale": (1.25, ROLES),
    "box_margin": (0.35, ROLES),  # the sequences without ground_truth_bb boxes use it
    "cameras": (tuple(CAMERA_NAMES[:3]), ROLES),
    "frame_step": (3, ("labeled", "unlabeled")),
    "eval_frame_step": (2, ("eval",)),
}
# options that shape no sample, and why
NOT_SHAPING = {
    "splits": "which subjects a role takes: the role and the take name the entry's file",
    "with_damaged_actions": "whether a damaged take is converted, not how",
    "max_frames": "how many frames a role takes: the frames are in the key (frame_step)",
    "metadata": "how takes are numbered (the entry's file name) and a cross-check of cameras",
    "cache": "where the entries are kept",
}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("h36m_release_cache") / "h36m"
    root.mkdir()
    build_release(root)
    return root


def _entries(root: Path, **options) -> dict[tuple[str, str, str], Path]:
    """(role, subject, take) -> the cache file of each sequence planned with `options`."""
    opts = H36MReleaseOptions(**{**dict(image_size=64, splits=dict(SPLITS), frame_step=2,
                                        eval_frame_step=4), **options})
    plan = plan_release(root, opts, root.parent / "out")
    return {(u.role, u.payload.take.subject, u.payload.take.name): u.payload.cache.path
            for u in plan.units}


def _check_all_changed(before: dict, after: dict, roles=ROLES) -> None:
    shaped = [k for k in before.keys() & after.keys() if k[0] in roles]
    assert {k[0] for k in shaped} == set(roles)  # each shaped role has sequences in both
    assert [k for k in shaped if before[k] == after[k]] == []


def test_every_option_has_a_case_or_a_reason():
    options = {f.name for f in dataclasses.fields(H36MReleaseOptions)}
    assert set(SHAPING) | set(NOT_SHAPING) == options
    assert not set(SHAPING) & set(NOT_SHAPING)


@pytest.mark.parametrize("name", list(SHAPING))
def test_another_value_of_a_shaping_option_is_another_entry(release, name):
    value, roles = SHAPING[name]
    assert getattr(H36MReleaseOptions(), name) != value
    _check_all_changed(_entries(release), _entries(release, **{name: value}), roles)


def test_other_camera_distortion_is_another_entry(release, monkeypatch):
    """The crops are undistorted through each camera's distortion: a calibration fixed in
    pose3d (same intrinsics) must not reuse crops undistorted the old way."""
    before = _entries(release)
    real = h36m_official.h36m_cameras

    def recalibrated(subject):
        return [Camera(c.K, c.R, c.t, np.asarray(c.dist) * 1.1 + 1e-4, c.image_size, c.name)
                for c in real(subject)]

    monkeypatch.setattr(h36m_official, "h36m_cameras", recalibrated)
    _check_all_changed(before, _entries(release))


def test_other_converter_code_is_another_entry(release, monkeypatch, tmp_path):
    """The key holds a digest of the converter's code (the module that cuts the crops among
    it): the same module with another source is another entry."""
    assert {h36m_official, crop} <= set(h36m_official._SAMPLE_CODE)
    entries = []
    for version, source in enumerate(["SCALE = 1.0\n", "SCALE = 1.1\n"]):
        path = tmp_path / f"v{version}" / "part.py"
        path.parent.mkdir()
        path.write_text(source)
        module = types.ModuleType("part")
        module.__file__ = str(path)
        monkeypatch.setattr(h36m_official, "_SAMPLE_CODE",
                            (*h36m_official._SAMPLE_CODE, module))
        entries.append(_entries(release))
        monkeypatch.undo()
    _check_all_changed(*entries)
