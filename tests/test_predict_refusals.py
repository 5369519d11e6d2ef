"""What `pose3d predict` refuses or warns about (issue 26): rig camera names that would leave
--out or share a folder, a rerun that fails halfway, root depths that are not a depth, a rig
that cannot triangulate, truncated and huge images, and boxes far past the frame.

Outputs are only checked for where they go: a tiny untrained checkpoint runs on noise."""

from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

from pose3d.cli import main as cli_main
from pose3d.data import studio
from pose3d.models import build_model
from pose3d.models.saved import fingerprint
from pose3d.predict import predict_views
from pose3d.predict.inputs import PredictWarning, open_source, read_image
from pose3d.predict.rig_footage import predict_rig_sources
from pose3d.predict.runner import Predictor

SIZE = 64  # frames and model input alike
ARCHS = {"sv": {"kind": "single_view", "backbone": "resnet10", "deconv_channels": 16,
                "num_deconv": 3, "depth_bins": 8},
         "mv": {"kind": "multi_view", "backbone": "resnet10", "deconv_channels": 16,
                "num_deconv": 3, "confidence_hidden": 16}}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for kind, arch in ARCHS.items():
        torch.manual_seed(0)
        model = build_model(arch)
        torch.save({"model": model.state_dict(), "fingerprint": fingerprint(model, arch),
                    "config": {"data": {"image_size": SIZE}}, "step": 1}, root / f"{kind}.pt")
        out[kind] = str(root / f"{kind}.pt")
    return out


def _images(folder, count: int, seed: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        paths.append(folder / f"{i:03d}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    return paths


def _cameras(path, names: list[str], same: bool = False) -> str:
    rig = studio.random_rig(len(names), np.random.default_rng(0), image_size=SIZE)
    if same:
        rig = [rig[0]] * len(names)
    path.write_text(json.dumps([{"name": n, "K": c.K.tolist(), "R": c.R.tolist(),
                                 "t": c.t.tolist()} for n, c in zip(names, rig)]))
    return str(path)


def _predict(*args: str) -> int:
    return cli_main(["predict", *args, "--no-progress"])


def _one_line_error(capsys, expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d predict: error: ") and "\n" not in err, err
    assert expected in err, err


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", ["parent", "absolute", "twice", "reserved"])
def test_rig_camera_names_must_be_plain_and_unique(ckpt, tmp_path, capsys, case):
    views = [str(_images(tmp_path / f"view{v}", 1, v)[0].parent) for v in range(2)]
    outside = tmp_path / "outside"
    names = {"parent": ["../../outside", "b"], "absolute": [str(outside), "b"],
             "twice": ["a", "a"], "reserved": ["predictions.json", "b"]}[case]
    cams = _cameras(tmp_path / "cams.json", names)
    out = tmp_path / "deep" / "out"
    assert _predict("--checkpoint", ckpt["mv"], *views, "--cameras", cams,
                    "--out", str(out)) == 2
    _one_line_error(capsys, {"parent": "'../../outside'", "absolute": repr(str(outside)),
                             "twice": "named a", "reserved": "'predictions.json'"}[case])
    assert not outside.exists() and not out.exists()


def test_a_failed_rerun_leaves_the_earlier_predictions_as_they_were(ckpt, tmp_path, capsys):
    shots, out = tmp_path / "shots", tmp_path / "out"
    _images(shots, 2, seed=0)
    assert _predict("--checkpoint", ckpt["sv"], str(shots), "--out", str(out),
                    "--batch-size", "1") == 0
    before = _files(out / "shots")
    assert "overlay/000.png" in before and "predictions.json" in before
    _images(shots, 1, seed=5)  # a new first frame, then one that cannot be read
    (shots / "001.png").write_bytes(b"not an image")
    assert _predict("--checkpoint", ckpt["sv"], str(shots), "--out", str(out),
                    "--batch-size", "1") == 2
    _one_line_error(capsys, "001.png")
    assert _files(out / "shots") == before
    assert [p.name for p in out.iterdir()] == ["shots"]  # no temporary folder left
    # a successful rerun replaces the folder as a whole
    (shots / "001.png").unlink()
    assert _predict("--checkpoint", ckpt["sv"], str(shots), "--out", str(out)) == 0
    after = _files(out / "shots")
    assert after["overlay/000.png"] != before["overlay/000.png"] and "overlay/001.png" not in after


def test_a_failure_on_a_later_input_leaves_every_earlier_folder(ckpt, tmp_path, capsys):
    """issue 32 item 12: `predict a/ b/` where b/ fails leaves o/a as it was too (timing.json
    included): the invocation is swapped in once, never a mixed --out."""
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "o"
    _images(a, 1, seed=0)
    _images(b, 1, seed=1)
    assert _predict("--checkpoint", ckpt["sv"], str(a), str(b), "--out", str(out)) == 0
    before = _files(out)
    assert {"a/timing.json", "b/timing.json", "a/predictions.json"} <= set(before)
    _images(a, 1, seed=7)  # a new frame for a/, then b/ cannot be read
    (b / "000.png").write_bytes(b"not an image")
    assert _predict("--checkpoint", ckpt["sv"], str(a), str(b), "--out", str(out)) == 2
    _one_line_error(capsys, "000.png")
    assert _files(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # no temporary folder left
    (b / "000.png").unlink()
    _images(b, 1, seed=8)
    assert _predict("--checkpoint", ckpt["sv"], str(a), str(b), "--out", str(out)) == 0
    after = _files(out)
    assert after["a/overlay/000.png"] != before["a/overlay/000.png"]
    assert after["b/overlay/000.png"] != before["b/overlay/000.png"]
    assert {"a/timing.json", "b/timing.json"} <= set(after)


def test_a_folder_predict_did_not_write_is_refused(ckpt, tmp_path, capsys):
    shots, out = tmp_path / "shots", tmp_path / "out"
    _images(shots, 1, seed=0)
    (out / "shots").mkdir(parents=True)
    (out / "shots" / "notes.txt").write_text("mine")
    assert _predict("--checkpoint", ckpt["sv"], str(shots), "--out", str(out)) == 2
    _one_line_error(capsys, "did not write")
    assert _files(out) == {"shots/notes.txt": b"mine"}


@pytest.mark.parametrize("depth", ["0", "-5", "nan", "inf"])
def test_a_root_depth_that_is_not_a_depth_is_refused(ckpt, tmp_path, capsys, depth):
    image = _images(tmp_path / "shots", 1, seed=0)[0]
    assert _predict("--checkpoint", ckpt["sv"], str(image), "--out", str(tmp_path / "out"),
                    "--intrinsics", "80,80,32,32", f"--root-depth={depth}") == 2
    _one_line_error(capsys, "--root-depth")
    assert not (tmp_path / "out").exists()


def test_a_rig_of_one_camera_twice_is_refused(ckpt, tmp_path, capsys):
    views = [str(_images(tmp_path / f"view{v}", 1, v)[0].parent) for v in range(2)]
    cams = _cameras(tmp_path / "cams.json", ["a", "b"], same=True)
    assert _predict("--checkpoint", ckpt["mv"], *views, "--cameras", cams,
                    "--out", str(tmp_path / "out")) == 2
    _one_line_error(capsys, "same point")


def test_predict_views_refuses_one_camera_twice(ckpt):
    cam = studio.random_rig(1, np.random.default_rng(0), image_size=SIZE)[0]
    frames = [[np.zeros((SIZE, SIZE, 3), np.uint8)]] * 2
    with pytest.raises(ValueError, match="same point"):
        predict_views(ckpt["mv"], frames, [cam, cam])


class _Untriangulated(torch.nn.Module):
    """F_mv's outputs for a batch in which no joint could be triangulated."""

    def forward(self, images, K, R, t):
        b, v = images.shape[:2]
        return {"joints2d": torch.full((b, v, 17, 2), SIZE / 2), "joints3d": torch.zeros(b, 17, 3),
                "valid3d": torch.zeros(b, 17, dtype=torch.bool),
                "confidences": torch.zeros(b, v, 17)}


def test_untriangulated_frames_are_warned_about(tmp_path):
    views = [open_source(_images(tmp_path / f"view{v}", 2, v)[0].parent) for v in range(2)]
    rig = studio.random_rig(2, np.random.default_rng(0), image_size=SIZE)
    predictor = Predictor(_Untriangulated(), SIZE, torch.device("cpu"), "multi_view")
    with pytest.warns(PredictWarning, match="2 of 2 frames have joints that could not be "
                                            "triangulated"):
        predict_rig_sources(predictor, views, rig, tmp_path / "out", progress=False)


def _truncated_jpeg(path) -> None:
    rng = np.random.default_rng(0)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    path.write_bytes(data.tobytes()[: len(data) // 2])


def test_a_truncated_jpeg_is_named_in_one_warning(ckpt, tmp_path, capsys):
    path = tmp_path / "cut.jpg"
    _truncated_jpeg(path)
    with pytest.warns(PredictWarning, match="cut.jpg is truncated"):
        assert read_image(path).shape == (SIZE, SIZE, 3)
    assert _predict("--checkpoint", ckpt["sv"], str(path), "--out", str(tmp_path / "out")) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "warning" in line] == [
        f"pose3d predict: warning: {path} is truncated (the JPEG has no end marker): "
        f"predicted on the part that decodes"]


def _png_header(path, width: int, height: int) -> None:
    """A PNG that declares width x height pixels and holds no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [8000, 20000])  # past our limit; past Pillow's too
def test_a_huge_image_is_refused_from_its_header(tmp_path, side):
    _png_header(tmp_path / "huge.png", side, side)
    with pytest.raises(ValueError, match=f"huge.png.*{side * side}.*pixels"
                                         if side > 10000 else "huge.png is 8000x8000 pixels"):
        read_image(tmp_path / "huge.png")


def test_the_pixel_limit_is_a_parameter(tmp_path):
    small = _images(tmp_path / "shots", 1, seed=0)[0]
    with pytest.raises(ValueError, match=f"is {SIZE}x{SIZE} pixels, more than pose3d predict "
                                         f"decodes \\(4,000\\)"):
        read_image(small, max_pixels=4000)


def test_a_box_far_past_the_image_is_one_line(ckpt, tmp_path, capsys):
    image = _images(tmp_path / "shots", 1, seed=0)[0]
    assert _predict("--checkpoint", ckpt["sv"], str(image), "--out", str(tmp_path / "out"),
                    "--box", "0,0,1e12,1e12") == 2
    _one_line_error(capsys, "times the 64x64 image's size")


@pytest.mark.parametrize("option", ["--boxes", "--intrinsics", "--cameras", "rig --boxes"])
def test_deeply_nested_json_is_one_line(ckpt, tmp_path, capsys, option):
    """issue 32 item 17: no RecursionError from a user's JSON."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    image = str(_images(tmp_path / "shots", 1, seed=0)[0])
    args = {"--boxes": [image, "--boxes", str(deep)],
            "--intrinsics": [image, "--intrinsics", str(deep)],
            "--cameras": [image, image, "--cameras", str(deep)],
            "rig --boxes": [image, image, "--cameras", _cameras(tmp_path / "c.json", ["a", "b"]),
                            "--boxes", str(deep)]}[option]
    checkpoint = ckpt["mv"] if "--cameras" in args else ckpt["sv"]
    assert _predict("--checkpoint", checkpoint, *args, "--out", str(tmp_path / "out")) == 2
    _one_line_error(capsys, f"{deep}: JSON nested more than")
    assert not (tmp_path / "out").exists()
