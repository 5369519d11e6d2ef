"""Time `pose3d convert h36m` on a real-size release fixture (docs/datasets.md's conversion-time
figures): one S1 take of FRAMES frames x 4 cameras at 1000 x 1000 / 1000 x 1002 px, textured
(blurred noise, shifted each frame), MPEG-4 part 2 video, ground_truth_bb boxes; converted
to 256 px at frame steps 1, 5 and 64, one process.

    PYTHONPATH=.:tests python tests/h36m_release_timing.py [WORKDIR]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h36m_release_data as fixture
import numpy as np

from pose3d.data.convert.h36m_official import H36MReleaseOptions, convert_h36m_release
from pose3d.data.convert.h36m_release import video_path

FRAMES = 150


def textured_video_writer(texture: np.ndarray):
    """A fixture.write_video replacement: the texture, moved 3 px a frame, under the joints'
    markers (flat frames would make decoding unrealistically cheap)."""
    def write(path: Path, camera, poses) -> None:
        w, h = camera.image_size
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50, (w, h))
        for i, pose in enumerate(poses):
            image = np.roll(texture[:h, :w], 3 * i, axis=1).copy()
            for u, v in camera.project(pose):
                cv2.circle(image, (int(u), int(v)), 8, (255, 255, 255), -1)
            writer.write(image)
        writer.release()
    return write


def main(work: Path) -> None:
    root = work / "release"
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (1002, 1000, 3), dtype=np.uint8), (0, 0), 3)
    fixture.write_video = textured_video_writer(texture)
    fixture.build_release(root, real_size=True, takes={"S1": {"Walking": (FRAMES, FRAMES)}})
    capture = cv2.VideoCapture(str(video_path(root, "S1", "Walking", "54138969")))
    start, n = time.perf_counter(), 0
    while capture.read()[0]:
        n += 1
    print(f"decoding: {1000 * (time.perf_counter() - start) / n:.1f} ms per frame")
    for step in (1, 5, 64):
        out = work / f"out{step}"
        shutil.rmtree(out, ignore_errors=True)
        options = H36MReleaseOptions(image_size=256, splits={"labeled": ("S1",)},
                                     frame_step=step)
        start = time.perf_counter()
        summary = convert_h36m_release(root, out, options, progress=False)
        seconds = time.perf_counter() - start
        tuples = summary.written["labeled"]
        print(f"--frame-step {step}: {tuples} tuples in {seconds:.1f} s, "
              f"{seconds / tuples:.3f} s per tuple")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
