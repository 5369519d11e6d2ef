"""data.decode_on_device: the workers pass JPEG bytes on, the trainer's device decodes them
(pose3d.data.device_decode). Here the device is the CPU: the same torchvision call with
device='cpu', checked against the loader's own OpenCV decoding."""

import io
import tarfile
import warnings

import cv2
import numpy as np
import pytest
import torch
from studio_helpers import write_dataset

from pose3d.data import schema
from pose3d.data.device_decode import decode_batch
from pose3d.data.loader import CorruptSampleWarning, make_train_loader
from pose3d.data.shards import shards_for_role
from pose3d.train.stage_base import batch_to

SIZE = 32
# ImageNet-normalised values of pixels 2 grey levels apart (the two JPEG decoders may round
# an IDCT or an upsampled chroma sample differently)
TWO_LEVELS = 2 / 255 / 0.224


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("studio")
    write_dataset(out, {"labeled": ("S1",)}, frames=4, image_size=SIZE, samples_per_shard=2)
    return out


def _first(loader):
    return next(iter(loader))


def test_batches_decoded_on_the_device_match_the_workers_decoding(dataset):
    kw = dict(batch_size=3, batches_per_epoch=1, shuffle_buffer=0)
    plain = _first(make_train_loader(str(dataset), **kw))
    raw = _first(make_train_loader(str(dataset), decode_on_device=True, **kw))
    assert "images" not in raw and raw["image_size"] == SIZE
    assert len(raw["jpegs"]) == 3 and all(len(views) == 4 for views in raw["jpegs"])
    assert raw["key"] == plain["key"]
    decoded = batch_to(raw, torch.device("cpu"))  # what the trainer calls
    assert decoded["images"].shape == plain["images"].shape == (3, 4, 3, SIZE, SIZE)
    assert decoded["images"].dtype == torch.float32
    torch.testing.assert_close(decoded["images"], plain["images"], rtol=0, atol=TWO_LEVELS)
    assert (decoded["images"] - plain["images"]).abs().mean() < 0.1 * TWO_LEVELS
    assert torch.equal(decoded["valid"], plain["valid"])
    torch.testing.assert_close(decoded["K"], plain["K"])


def test_a_jpeg_that_does_not_decode_makes_its_view_invalid(dataset):
    raw = _first(make_train_loader(str(dataset), 2, batches_per_epoch=1, shuffle_buffer=0,
                                   decode_on_device=True))
    good = raw["jpegs"][1][2]
    raw["jpegs"][1][2] = torch.cat([good[:200], torch.zeros(len(good) - 200, dtype=torch.uint8)])
    with pytest.warns(UserWarning, match="view 2"):
        out = decode_batch(raw, torch.device("cpu"))
    assert out["valid"].sum() == 7 and not out["valid"][1, 2]
    assert (out["images"][0] != 0).any() and (out["images"][1, 3] != 0).any()


def test_missing_views_stay_zero_and_invalid(dataset):
    raw = _first(make_train_loader(str(dataset), 2, batches_per_epoch=1, shuffle_buffer=0,
                                   decode_on_device=True))
    raw["jpegs"][0][1] = None
    raw["valid"][0, 1] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = decode_batch(raw, torch.device("cpu"))
    mean = torch.tensor(schema.IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(schema.IMAGE_STD).view(3, 1, 1)
    torch.testing.assert_close(out["images"][0, 1], (0 - mean / std).expand(3, SIZE, SIZE))


def test_jpeg_size_reads_the_frame_header():
    img = np.zeros((24, 40, 3), np.uint8)
    for flags in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):  # baseline SOF0, progressive SOF2
        data = cv2.imencode(".jpg", img, flags)[1].tobytes()
        assert schema.jpeg_size(data) == (40, 24)
        assert schema.jpeg_size(data[:20]) is None  # ends before the frame header
    assert schema.jpeg_size(b"GIF89a....") is None


def test_a_corrupt_or_resized_jpeg_header_is_skipped_and_counted_by_the_workers(dataset,
                                                                                 tmp_path):
    src = shards_for_role(dataset, "labeled")[0]  # 2 tuples
    dst = tmp_path / "bad.tar"
    small = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        names = tin.getnames()
        first, second = names[0].split(".")[0], names[-1].split(".")[0]
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            if member.name == f"{first}.view0.jpg":
                data = b"not a jpeg" + data
            if member.name == f"{second}.view3.jpg":
                data = small
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    loader = make_train_loader(str(dst), 1, batches_per_epoch=1, decode_on_device=True,
                               shuffle_buffer=0)
    with pytest.warns(CorruptSampleWarning) as seen:
        with pytest.raises(RuntimeError, match="unusable samples in a row"):
            for _ in loader:  # both tuples skipped, over and over: an endless bad stream
                pass
    messages = {str(w.message) for w in seen}
    assert any(f"{first}.view0.jpg: corrupt JPEG" in m for m in messages)
    assert any(f"{second}.view3.jpg: image is 16x16, meta says {SIZE}" in m for m in messages)


def test_decoding_on_the_device_refuses_augmentation(dataset):
    with pytest.raises(ValueError, match="augment"):
        make_train_loader(str(dataset), 2, augment=True, decode_on_device=True)
