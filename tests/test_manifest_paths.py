"""A manifest cannot make a reader open files outside its dataset folder (issue 26): shard
entries with '..' or an absolute path, or naming a symbolic link that leads outside (issue
32), are refused in one line naming the manifest, here
through `pose3d eval`, with a readable shard waiting at the place they point to."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from train_data import write_tiny_dataset

from pose3d import cli
from pose3d.data.shards import MANIFEST, load_manifest, resolve_shards
from pose3d.models import build_model
from pose3d.models.saved import fingerprint

SV = {"kind": "single_view", "backbone": "resnet10", "deconv_channels": 8, "num_deconv": 1,
      "depth_bins": 4, "depth_range_mm": 2000.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest_paths")
    write_tiny_dataset(root / "data", frames=2, image_size=32)
    torch.manual_seed(0)
    model = build_model(SV)
    torch.save({"model": model.state_dict(), "fingerprint": fingerprint(model, SV),
                "config": "data:\n  image_size: 32\n"}, root / "sv.pt")
    return root


def _pointing_outside(root, tmp_path, how: str):
    """A copy of the dataset whose first eval shard entry points at a copy outside it."""
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    manifest = json.loads((data / MANIFEST).read_text())
    entry = manifest["roles"]["eval"]["shards"][0]
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(data / entry["file"], outside / entry["file"])
    if how == "symlink":  # a plain name in the manifest, a link in the folder
        (data / f"link-{entry['file']}").symlink_to(outside / entry["file"])
        entry["file"] = f"link-{entry['file']}"
    elif how == "symlinked_folder":
        (data / "sub").symlink_to(outside, target_is_directory=True)
        entry["file"] = f"sub/{entry['file']}"
    else:
        entry["file"] = f"../outside/{entry['file']}" if how == "dotdot" \
            else str(outside / entry["file"])
    (data / MANIFEST).write_text(json.dumps(manifest))
    return data, entry["file"]


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked_folder"])
def test_eval_refuses_shards_outside_the_dataset(setup, tmp_path, capsys, how):
    data, name = _pointing_outside(setup, tmp_path, how)
    code = cli.main(["eval", "--checkpoint", f"A={setup / 'sv.pt'}", "--data", str(data),
                     "--out", str(tmp_path / "out"), "--device", "cpu", "--figures", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and str(data / MANIFEST) in err and name in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_every_reader_goes_through_the_check(setup, tmp_path, how):
    data, _ = _pointing_outside(setup, tmp_path, how)
    for read in (lambda: load_manifest(data), lambda: resolve_shards(data),
                 lambda: resolve_shards(data, "labeled")):
        with pytest.raises(ValueError, match="not a path inside the dataset folder"):
            read()


def test_shards_in_a_subfolder_and_plain_names_still_load(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup / "data", data)
    manifest = json.loads((data / MANIFEST).read_text())
    entry = manifest["roles"]["eval"]["shards"][0]
    (data / "sub").mkdir()
    shutil.move(data / entry["file"], data / "sub" / entry["file"])
    entry["file"] = f"sub/{entry['file']}"
    (data / MANIFEST).write_text(json.dumps(manifest))
    assert str(data / "sub") in resolve_shards(data, "eval")[0]


def test_links_that_stay_inside_and_a_linked_dataset_folder_still_load(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup / "data", data)
    manifest = json.loads((data / MANIFEST).read_text())
    entry = manifest["roles"]["eval"]["shards"][0]
    (data / "link.tar").symlink_to(entry["file"])  # relative, inside the folder
    entry["file"] = "link.tar"
    (data / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "alias").symlink_to(data, target_is_directory=True)
    assert resolve_shards(tmp_path / "alias", "eval")[0] == str(tmp_path / "alias" / "link.tar")


DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit


@pytest.mark.parametrize("depth", ["past_python", "past_ours"])
def test_a_deeply_nested_manifest_is_one_line(setup, tmp_path, capsys, depth):
    """issue 32 item 17: eval (and every reader) names the manifest, no RecursionError; a
    nesting Python can parse but code walking it could not is refused too."""
    data = tmp_path / "data"
    shutil.copytree(setup / "data", data)
    manifest = json.loads((data / MANIFEST).read_text())
    manifest["config"] = {"x": json.loads("[" * 200 + "]" * 200)}
    (data / MANIFEST).write_text(DEEP if depth == "past_python" else json.dumps(manifest))
    code = cli.main(["eval", "--checkpoint", f"A={setup / 'sv.pt'}", "--data", str(data),
                     "--out", str(tmp_path / "out"), "--device", "cpu", "--figures", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("pose3d eval: error: ") and "\n" not in err, err
    assert str(data / MANIFEST) in err and "nested more than" in err, err
    assert not (tmp_path / "out").exists()
