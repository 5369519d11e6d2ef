import io
import json

import numpy as np
import pytest

from pose3d.data import schema
from pose3d.geometry import h36m_cameras, square_box

SIZE = 40


def _views(rng, count=4):
    images, cameras = [], []
    points = rng.uniform(-500, 500, (17, 3)) + [0, 0, 1000]
    for cam in h36m_cameras("S9")[:count]:
        cam = cam.crop_and_resize(square_box(cam.project(points), 0.2), SIZE)
        cameras.append(cam)
        blocks = rng.integers(0, 256, (SIZE // 8, SIZE // 8, 3), dtype=np.uint8)
        images.append(np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1))  # JPEG-friendly
    return images, cameras


def _meta(role="labeled"):
    return {"subject": "S9", "action": "walking dog", "clip": 3, "frame": 17, "role": role}


def test_round_trip_keeps_images_cameras_pose_and_meta(rng):
    images, cameras = _views(rng)
    images[2], cameras[2] = None, None  # a missing view
    joints = rng.normal(0, 300, (17, 3)).astype(np.float32)
    pgt = joints + 5
    raw = schema.encode_sample(images, cameras, joints, _meta(), pgt=pgt)

    assert raw["__key__"] == "S9-walking_dog-0003-000017"
    assert "view2.jpg" not in raw and "view3.jpg" in raw
    out = schema.decode_sample(raw)
    assert out.key == raw["__key__"]
    assert out.valid.tolist() == [True, True, False, True]
    assert out.images.shape == (4, SIZE, SIZE, 3) and out.images.dtype == np.uint8
    for v in (0, 1, 3):  # JPEG is lossy, but 8x8 blocks of flat colour survive closely
        assert np.median(np.abs(out.images[v].astype(int) - images[v])) < 5
    assert not out.images[2].any()
    for v in (0, 1, 3):
        np.testing.assert_allclose(out.K[v], cameras[v].K, rtol=1e-6)
        np.testing.assert_allclose(out.R[v], cameras[v].R, atol=1e-6)
        np.testing.assert_allclose(out.t[v], cameras[v].t, rtol=1e-6)
    placeholder = schema.placeholder_camera(SIZE)
    np.testing.assert_allclose(out.t[2], placeholder.t)
    np.testing.assert_array_equal(out.joints3d, joints)
    np.testing.assert_array_equal(out.pgt, pgt)
    assert out.meta["subject"] == "S9" and out.meta["frame"] == 17
    assert out.meta["image_size"] == SIZE and out.meta["schema"] == schema.SCHEMA_VERSION
    assert out.meta["camera_names"][0] == cameras[0].name
    cams = out.cameras()
    assert cams[2] is None and cams[0].image_size == (SIZE, SIZE)


def test_unlabeled_sample_has_no_pose_file(rng):
    images, cameras = _views(rng, 2)
    raw = schema.encode_sample(images, cameras, None, _meta("unlabeled"))
    assert schema.JOINTS_FILE not in raw and schema.PGT_FILE not in raw
    out = schema.decode_sample(raw)
    assert out.joints3d is None and out.pgt is None


def test_with_pgt_adds_the_pseudo_ground_truth(rng):
    images, cameras = _views(rng, 2)
    raw = schema.encode_sample(images, cameras, None, _meta("unlabeled"))
    raw["__url__"] = "somewhere.tar"
    pgt = rng.normal(0, 100, (17, 3))
    out = schema.with_pgt(raw, pgt)
    assert "__url__" not in out and out["view0.jpg"] is raw["view0.jpg"]
    np.testing.assert_allclose(schema.decode_sample(out).pgt, pgt, rtol=1e-6)


@pytest.mark.parametrize("subject,action", [("S1", "Walking.1"), ("a b", "x-y"), ("S9", "é")])
def test_keys_have_no_dots_and_split_into_four_parts(subject, action):
    key = schema.make_key(subject, action, 2, 5)
    assert "." not in key and len(key.split("-")) == 4


def test_encode_rejects_bad_input(rng):
    images, cameras = _views(rng, 2)
    with pytest.raises(ValueError, match="role"):
        schema.encode_sample(images, cameras, None, {**_meta(), "role": "train"})
    with pytest.raises(ValueError, match="meta is missing"):
        schema.encode_sample(images, cameras, None, {"subject": "S1"})
    with pytest.raises(ValueError, match="square"):
        schema.encode_sample([images[0][:, :30], images[1]], cameras, None, _meta())
    with pytest.raises(ValueError, match="image_size"):
        schema.encode_sample([images[0][:20, :20], images[0][:20, :20]], cameras, None,
                             _meta())
    with pytest.raises(ValueError, match="one camera per view"):
        schema.encode_sample(images, cameras[:1], None, _meta())
    with pytest.raises(ValueError, match="joints3d"):
        schema.encode_sample(images, cameras, np.zeros((16, 3)), _meta())
    with pytest.raises(ValueError, match="at least one valid view"):
        schema.encode_sample([None, None], cameras, None, _meta())
    with pytest.raises(ValueError, match="'.'"):
        schema.encode_sample(images, cameras, None, _meta(), key="a.b")


def _raw(rng):
    images, cameras = _views(rng, 3)
    return schema.encode_sample(images, cameras, np.zeros((17, 3)), _meta())


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.pop("view1.jpg"), "view 1 is marked valid"),
    (lambda s: s.__setitem__("view0.jpg", s["view0.jpg"][:40]), "corrupt JPEG"),
    (lambda s: s.pop("cameras.npy"), "no cameras.npy"),
    (lambda s: s.__setitem__("cameras.npy", b"garbage"), "unreadable cameras"),
    (lambda s: s.pop("meta.json"), "no meta.json"),
    (lambda s: s.__setitem__("meta.json", b"{not json"), "unreadable meta"),
    (lambda s: s.__setitem__("joints3d.npy", b"\x93NUMPY"), "unreadable array"),
])
def test_decode_names_the_problem(rng, damage, message):
    raw = _raw(rng)
    damage(raw)
    with pytest.raises(schema.SampleError, match=message):
        schema.decode_sample(raw)


@pytest.mark.parametrize("cameras,message", [
    (np.zeros(2, schema.CAMERA_DTYPE), "3 camera records"),  # the sample has 3 views
    (np.zeros((3, 3, 3), np.float32), "3 camera records"),
    (np.full(3, np.nan, schema.CAMERA_DTYPE), "non-finite"),
])
def test_decode_rejects_malformed_cameras(rng, cameras, message):
    raw = _raw(rng)
    buf = io.BytesIO()
    np.save(buf, cameras)
    raw["cameras.npy"] = buf.getvalue()
    with pytest.raises(schema.SampleError, match=message):
        schema.decode_sample(raw)


def test_cameras_file_reads_with_plain_numpy(rng):
    images, cameras = _views(rng, 2)
    raw = schema.encode_sample(images, cameras, None, _meta())
    records = np.load(io.BytesIO(raw["cameras.npy"]))
    np.testing.assert_allclose(records["K"][1], cameras[1].K, rtol=1e-6)
    assert records["t"].shape == (2, 3)


def test_decode_rejects_a_newer_schema(rng):
    raw = _raw(rng)
    meta = json.loads(raw["meta.json"])
    raw["meta.json"] = json.dumps({**meta, "schema": schema.SCHEMA_VERSION + 1}).encode()
    with pytest.raises(schema.SampleError, match="newer"):
        schema.decode_sample(raw)


@pytest.mark.parametrize("kind, value", [
    ("role", "labeled"), ("role", "unlabeled"), ("role", "eval"),
    ("subject", "S9"), ("action", "Walking Dog 1"), ("action", "walk.fast"),
    ("camera", "54138969"), ("subject", "x" * schema.NAME_MAX_CHARS)])
def test_check_name_accepts_plain_names(kind, value):
    assert schema.check_name(kind, value) == value


@pytest.mark.parametrize("kind, value", [
    ("role", "../../../X"), ("role", "Labeled"), ("role", None), ("role", ""),
    ("subject", "../S1"), ("subject", "S1/../../x"), ("subject", "a\\b"), ("subject", ".."),
    ("subject", ".hidden"), ("action", "a..b"), ("action", "/etc/passwd"), ("action", ""),
    ("action", "a\x00b"), ("action", "a\nb"), ("subject", 7), ("subject", ["S1"]),
    ("subject", "x" * (schema.NAME_MAX_CHARS + 1))])
def test_check_name_refuses_what_could_become_a_path(kind, value):
    with pytest.raises(ValueError, match=kind):
        schema.check_name(kind, value)


@pytest.mark.parametrize("field, value, message", [
    ("schema", "1", "schema must be a non-negative integer"),
    ("schema", None, "schema must be a non-negative integer"),
    ("image_size", "sixty-four", "image_size must be a non-negative integer"),
    ("image_size", 0, "image_size must be a positive integer"),
    ("image_size", 40.0, "image_size must be a non-negative integer"),
    ("frame", "17", "frame must be"),
    ("valid", ["yes", True, True], "valid must be a list of booleans"),
    ("camera_names", "cam", "camera_names must be a list"),
    ("camera_names", ["a", "../b", "c"], "camera name must be a plain name"),
    ("role", "../../../X", "role must be one of"),
    ("subject", "../S1", "subject must be a plain name"),
    ("action", {"a": 1}, "action must be a non-empty string"),
])
def test_decode_refuses_meta_of_the_wrong_type_as_a_bad_sample(rng, field, value, message):
    raw = _raw(rng)
    meta = json.loads(raw["meta.json"])
    raw["meta.json"] = json.dumps({**meta, field: value}).encode()
    with pytest.raises(schema.SampleError, match=message):
        schema.decode_sample(raw)
