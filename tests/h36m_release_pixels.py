"""How far the stored pinhole cameras land from what the stored crops show (the acceptance
figures of issue 24): the release fixture at the real frame sizes with the published
cameras (tests/h36m_release_data.py: markers drawn where the distorting lens puts the pelvis
and head), converted at 256 px, every frame; per marker, the distance (px) between the
marker's centre in the crop and the stored camera's pinhole projection (K, R, t: what
training uses) of its joint.

    PYTHONPATH=.:tests python tests/h36m_release_pixels.py [--no-remap] [WORKDIR]

--no-remap crops the distorted frames as they are (the converter before undistortion).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h36m_release_data as fixture
import numpy as np
from convert_data import read_dataset

from pose3d.data.convert import h36m_official
from pose3d.data.convert.crop import crop_image
from pose3d.data.convert.h36m_official import H36MReleaseOptions, convert_h36m_release


def marker_errors(samples: dict) -> np.ndarray:
    """Per marker of every valid view: |marker centre - pinhole projection| px [N]."""
    errors = []
    for s in samples.values():
        pose = fixture.pose_at(s.meta["subject"], s.meta["source_file"], s.meta["frame"])
        for v, cam in enumerate(s.cameras()):
            if cam is None:
                continue
            uv = cam.project(pose, distort=False)
            img = s.images[v].astype(int)
            pelvis = img.min(axis=2) > 140
            head = (img[..., 1] > 140) & (img[..., 0] < 100)
            for mask, joint in ((pelvis, 0), (head, fixture.HEAD)):
                centre = np.argwhere(mask).mean(0)[::-1]
                errors.append(float(np.linalg.norm(centre - uv[joint])))
    return np.array(errors)


def marker_radii(samples: dict) -> np.ndarray:
    """Per marker, in marker_errors' order: its distance from the optical axis in normalised
    image coordinates (|x / z, y / z|): where the lens distorts most."""
    radii = []
    for s in samples.values():
        pose = fixture.pose_at(s.meta["subject"], s.meta["source_file"], s.meta["frame"])
        for cam in s.cameras():
            if cam is None:
                continue
            xyz = cam.world_to_camera(pose)
            for joint in (0, fixture.HEAD):
                radii.append(float(np.linalg.norm(xyz[joint, :2] / xyz[joint, 2])))
    return np.array(radii)


def crop_without_remap(image, camera, box, out_size):
    """The converter's crop before undistortion: the distorted frame cropped as it is,
    stored with the pinhole camera (distortion dropped, as the loader drops it)."""
    return crop_image(image, box, out_size), camera.crop_and_resize(box, out_size).undistorted()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", type=Path, default=None)
    parser.add_argument("--no-remap", action="store_true")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="h36m_pixels_"))
    root = work / "release"
    if not root.is_dir():
        root.mkdir(parents=True)
        fixture.build_release(root, real_size=True)
    if args.no_remap:
        h36m_official.crop_view = crop_without_remap
    out = work / ("out_no_remap" if args.no_remap else "out")
    options = H36MReleaseOptions(image_size=args.image_size, splits=dict(fixture.SPLITS),
                                 frame_step=1, eval_frame_step=1,
                                 metadata=root / "metadata.xml")
    convert_h36m_release(root, out, options, progress=False)
    e = marker_errors(read_dataset(out))
    print(f"{len(e)} markers, {args.image_size} px crops{' (no remap)' if args.no_remap else ''}:"
          f" mean {e.mean():.3f} px, p95 {np.percentile(e, 95):.3f} px, max {e.max():.3f} px")


if __name__ == "__main__":
    main()
