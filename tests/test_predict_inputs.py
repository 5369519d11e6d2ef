"""pose3d.predict.inputs: boxes, intrinsics and cameras files, and the decode thread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pose3d.geometry import Camera
from pose3d.predict.inputs import (
    frame_box,
    parse_intrinsics,
    prefetch,
    read_boxes,
    read_cameras,
    read_rig_boxes,
)


def test_boxes_from_json_list_json_object_and_csv_agree(tmp_path):
    boxes = [(1, 2, 30, 40), (5, 6, 50, 60.5)]
    (tmp_path / "l.json").write_text(json.dumps(boxes))
    (tmp_path / "o.json").write_text(json.dumps({"0": boxes[0], "1": boxes[1]}))
    (tmp_path / "b.csv").write_text("frame,x0,y0,x1,y1\n0,1,2,30,40\n1,5,6,50,60.5\n")
    expected = {"0": (1.0, 2.0, 30.0, 40.0), "1": (5.0, 6.0, 50.0, 60.5)}
    for name in ("l.json", "o.json", "b.csv"):
        assert read_boxes(tmp_path / name) == expected


def test_bad_boxes_name_the_file_and_frame(tmp_path):
    (tmp_path / "bad.csv").write_text("0,10,10,5,20\n")
    with pytest.raises(ValueError, match="bad.csv.*x1 > x0"):
        read_boxes(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="no box for frame 7 of clip.mp4"):
        frame_box({"0": (0, 0, 1, 1)}, "7", (10, 10), "clip.mp4")
    with pytest.raises(ValueError, match="outside the 10x8 image"):
        frame_box((12, 0, 20, 5), "0", (10, 8), "a.png")
    assert frame_box(None, "0", (10, 8), "a.png") == (0.0, 0.0, 10.0, 8.0)
    # An image folder's frame found by its index when the file has no entry by name.
    assert frame_box({"1": (0, 0, 4, 4)}, "b.png", (10, 8), "shots", 1) == (0, 0, 4, 4)


def test_intrinsics_from_text_and_json(tmp_path):
    K = parse_intrinsics("500,510,320,240")
    np.testing.assert_array_equal(K, [[500, 0, 320], [0, 510, 240], [0, 0, 1]])
    (tmp_path / "k.json").write_text(json.dumps({"K": K.tolist()}))
    np.testing.assert_array_equal(parse_intrinsics(str(tmp_path / "k.json")), K)
    with pytest.raises(ValueError, match="fx,fy,cx,cy"):
        parse_intrinsics("500,510")


def test_cameras_json_as_list_or_named_object(tmp_path):
    cam = Camera(np.diag([800.0, 800.0, 1.0]), np.eye(3), np.array([0.0, 0.0, 4000.0]))
    d = {"K": cam.K.tolist(), "R": cam.R.tolist(), "t": cam.t.tolist()}
    d2 = {**d, "t": [500.0, 0.0, 4000.0]}  # half a metre to the side: a baseline
    (tmp_path / "list.json").write_text(json.dumps([d, {**d2, "dist": [0.1, 0, 0, 0, 0]}]))
    (tmp_path / "named.json").write_text(json.dumps({"left": d, "right": d2}))
    cams = read_cameras(tmp_path / "list.json")
    assert [c.name for c in cams] == ["cam0", "cam1"] and cams[1].dist[0] == 0.1
    named = read_cameras(tmp_path / "named.json")
    assert [c.name for c in named] == ["left", "right"]
    (tmp_path / "rb.json").write_text(json.dumps({"right": [[0, 0, 10, 10]]}))
    assert read_rig_boxes(tmp_path / "rb.json", named) == [None, {"0": (0.0, 0.0, 10.0, 10.0)}]
    (tmp_path / "one.json").write_text(json.dumps([d]))
    with pytest.raises(ValueError, match="at least two cameras"):
        read_cameras(tmp_path / "one.json")


def test_prefetch_keeps_order_and_reraises_errors_in_the_caller():
    assert list(prefetch(iter(range(100)), depth=4)) == list(range(100))

    def broken():
        yield 1
        raise ValueError("cannot read image x.png")

    with pytest.raises(ValueError, match="x.png"):
        list(prefetch(broken()))
