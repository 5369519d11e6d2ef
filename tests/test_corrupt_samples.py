"""One rule for a corrupt sample (issue 16, items 5, 7, 10): non-finite labels or cameras
and images of another size than the dataset's are skipped, counted and named (shard and key)
by the one reader, in training and evaluation alike, and the counts reach metrics.jsonl and
eval's report.json."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import warnings

import numpy as np
import pytest
from train_data import forge_meta, write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.data.loader import CorruptSampleWarning, make_eval_loader, make_train_loader
from pose3d.data.shards import shards_for_role
from pose3d.train.cli import add_arguments, main

SIZE = 32


def _members(path):
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _write(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, np.float32))
    return buf.getvalue()


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """A 32 px dataset whose labeled shards hold a tuple with a NaN in joints3d, one with an
    inf in pgt.npy, and one 64 px tuple. Returns (folder, {bad key: shard file name})."""
    root = tmp_path_factory.mktemp("poisoned")
    data, big = root / "data", root / "big"
    write_tiny_dataset(data, frames=6, image_size=SIZE, samples_per_shard=3)
    write_tiny_dataset(big, frames=1, image_size=2 * SIZE, samples_per_shard=3)
    first, second = shards_for_role(data, "labeled")[:2]
    members = _members(first)
    keys = sorted({name.split(".")[0] for name, _ in members})
    nan_key, inf_key = keys[0], keys[1]
    poisoned = []
    for name, payload in members:
        if name == f"{nan_key}.joints3d.npy":
            joints = np.load(io.BytesIO(payload))
            joints[3, 1] = np.nan
            payload = _npy(joints)
        if name == f"{inf_key}.meta.json":  # a sample's files are consecutive in the tar
            poisoned.append((f"{inf_key}.pgt.npy", _npy(np.full((17, 3), np.inf))))
        poisoned.append((name, payload))
    _write(first, poisoned)
    big_key = "S1-turning-0042-000000"
    extra = [(f"{big_key}.{name.split('.', 1)[1]}", payload)
             for name, payload in _members(shards_for_role(big, "labeled")[0])]
    _write(second, _members(second) + extra)
    names = {nan_key: first, inf_key: first, big_key: second}
    return data, {k: v.rsplit("/", 1)[1] for k, v in names.items()}


def test_eval_reader_skips_counts_and_names_them(poisoned):
    data, bad = poisoned
    loader = make_eval_loader(shards_for_role(data, "labeled"), batch_size=2, image_size=SIZE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = [k for batch in loader for k in batch["key"]]
    assert not set(bad) & set(keys) and len(keys) == 6 - 2  # 6 good labeled, 2 poisoned
    assert loader.skipped["sample"] == 3
    messages = [str(w.message) for w in caught if w.category is CorruptSampleWarning]
    for key, shard in bad.items():
        assert any(key in m and shard in m for m in messages), (key, messages)
    assert any("non-finite" in m and "joints3d" in m for m in messages)
    assert any("64 px images, but the dataset's are 32 px" in m for m in messages)
    assert len(loader.skip_examples) == 3 and all(s in " ".join(loader.skip_examples)
                                                  for s in bad)


def test_a_mixed_size_shard_never_breaks_a_batch(poisoned):
    data, _ = poisoned
    loader = make_train_loader(shards_for_role(data, "labeled"), batch_size=2,
                               batches_per_epoch=6, shuffle_buffer=4)  # size: the first's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shapes = {tuple(b["images"].shape[-2:]) for b in loader}
    assert shapes == {(SIZE, SIZE)} and loader.skipped["sample"] > 0


@pytest.mark.slow
def test_training_counts_and_names_skips_in_metrics_jsonl(poisoned, tmp_path):
    data, bad = poisoned
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([
        "--config", TINY, f"data.root={data}", f"data.image_size={SIZE}",
        f"run.root={tmp_path}", "stage=sv_pretrain", "data.batches_per_epoch=3",
        "optim.sv_pretrain.epochs=1", "optim.sv_pretrain.batch_size=2",
        "model.sv.num_deconv=1", "model.sv.depth_bins=4", "model.sv.deconv_channels=8"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    rows = [json.loads(r) for r in (tmp_path / "sv_pretrain" / "metrics.jsonl").read_text()
            .splitlines()]
    scalars = [r for r in rows if "train/loss" in r]
    assert all(np.isfinite(r["train/loss"]) and np.isfinite(r["train/mpjpe_mm"])
               for r in scalars)
    assert scalars[-1]["data/skipped_sample"] >= 1
    named = [e for r in rows for e in r.get("skip_examples", [])]
    assert named and any(key in e and bad[key] in e for e in named for key in bad)


def test_eval_report_counts_and_names_skips(poisoned, tmp_path, capsys):
    from test_eval_errors import SV, _save

    data, bad = poisoned
    out = tmp_path / "eval"
    ckpt = _save(tmp_path / "sv.pt", SV, image_size=SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["eval", "--data", str(data), "--role", "labeled", "--out", str(out),
                         "--checkpoint", f"A={ckpt}", "--device", "cpu", "--figures", "0"])
    assert code == 0, capsys.readouterr().err
    skipped = json.loads((out / "report.json").read_text())["A"]["skipped"]
    assert skipped["counts"] == {"sample": 3}
    assert all(any(key in e for e in skipped["examples"]) for key in bad)


@pytest.fixture(scope="module")
def forged_meta(tmp_path_factory):
    """A 32 px dataset whose first labeled shard holds a tuple with `"schema": "1"` and one
    with `"image_size": "sixty-four"` in meta.json (issue 32, item 15). Returns (folder,
    the forged keys)."""
    data = tmp_path_factory.mktemp("forged_meta") / "data"
    write_tiny_dataset(data, frames=6, image_size=SIZE, samples_per_shard=3)
    keys = forge_meta(shards_for_role(data, "labeled")[0],
                      [{"schema": "1"}, {"image_size": "sixty-four"}])
    return data, keys


@pytest.mark.parametrize("kind", ["eval", "train"])
def test_meta_of_the_wrong_type_is_a_skipped_and_counted_sample(forged_meta, kind):
    data, forged = forged_meta
    urls = shards_for_role(data, "labeled")
    loader = make_eval_loader(urls, batch_size=2, image_size=SIZE) if kind == "eval" else \
        make_train_loader(urls, batch_size=2, batches_per_epoch=3, shuffle_buffer=0,
                          image_size=SIZE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = [k for batch in loader for k in batch["key"]]
    assert not set(forged) & set(keys) and keys
    assert loader.skipped["sample"] >= 2
    messages = [str(w.message) for w in caught if w.category is CorruptSampleWarning]
    assert any(forged[0] in m and "schema must be" in m for m in messages), messages
    assert any(forged[1] in m and "image_size must be" in m for m in messages), messages


def _claim_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0, as OpenCV writes) claiming width x height."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[i + 9:]


@pytest.fixture
def forged_header(tmp_path):
    """A 32 px dataset whose first labeled tuple's view 0 is a ~1 KB JPEG whose header
    claims 30000 x 30000 px. Returns (folder, the forged key)."""
    data = tmp_path / "data"
    write_tiny_dataset(data, frames=3, image_size=SIZE, samples_per_shard=3)
    shard = shards_for_role(data, "labeled")[0]
    members = _members(shard)
    key = members[0][0].split(".")[0]
    _write(shard, [(n, _claim_size(p, 30000, 30000) if n == f"{key}.view0.jpg" else p)
                   for n, p in members])
    return data, key


@pytest.fixture
def decoded(monkeypatch) -> list:
    """The header sizes of the JPEGs OpenCV is asked to decode; a forgery is never decoded
    (it would take gigabytes), only recorded."""
    import cv2

    from pose3d.data import schema

    sizes, real = [], cv2.imdecode

    def imdecode(buf, flags):
        sizes.append(schema.jpeg_size(bytes(buf)))
        return real(buf, flags) if sizes[-1] == (SIZE, SIZE) else None

    monkeypatch.setattr(cv2, "imdecode", imdecode)
    return sizes


def test_a_forged_jpeg_header_is_skipped_before_decoding(forged_header, decoded):
    """issue 32 item 6: the header's size is checked before any pixel is decoded; the
    sample is skipped, counted and named."""
    data, key = forged_header
    loader = make_eval_loader(shards_for_role(data, "labeled"), batch_size=2, image_size=SIZE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = [k for batch in loader for k in batch["key"]]
    assert key not in keys and len(keys) == 2
    messages = [str(w.message) for w in caught if w.category is CorruptSampleWarning]
    assert any(key in m and "30000x30000, meta says 32" in m for m in messages), messages
    assert loader.skipped["sample"] == 1
    assert decoded and all(d == (SIZE, SIZE) for d in decoded)


def test_a_sample_side_past_any_model_input_is_refused_where_no_size_is_asked(
        forged_header, decoded):
    """A forged meta and header that agree: with no run size to compare against (previews,
    checks, iterate_samples) the side is still bounded before decoding."""
    from pose3d.data import schema
    from pose3d.data.loader import iterate_samples

    data, key = forged_header
    shard = shards_for_role(data, "labeled")[0]
    members = dict(_members(shard))
    meta = json.loads(members[f"{key}.meta.json"])
    side = schema.MAX_IMAGE_SIDE * 2
    sample = {"__key__": key, **{n.split(".", 1)[1]: p for n, p in members.items()
                                 if n.startswith(key + ".")}}
    sample["meta.json"] = json.dumps({**meta, "image_size": side}).encode()
    sample["view0.jpg"] = _claim_size(sample["view0.jpg"], side, side)
    with pytest.raises(schema.SampleError, match=f"{side} px images, more than a model input"):
        schema.decode_sample(sample)
    errors = []
    assert len(list(iterate_samples(shard, on_error=errors.append))) == 2
    assert any(key in e and "30000x30000" in e for e in errors)
    assert all(d == (SIZE, SIZE) for d in decoded)


def test_a_deeply_nested_meta_is_a_bad_sample(forged_header):
    """issue 32 item 17, the shards' own JSON: skipped as unreadable, no RecursionError."""
    from pose3d.data import schema

    data, key = forged_header
    members = dict(_members(shards_for_role(data, "labeled")[0]))
    sample = {"__key__": key, **{n.split(".", 1)[1]: p for n, p in members.items()
                                 if n.startswith(key + ".")}}
    sample["meta.json"] = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(schema.SampleError, match="unreadable meta.json.*nested more than"):
        schema.decode_sample(sample)
