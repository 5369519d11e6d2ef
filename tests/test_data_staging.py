"""An existing dataset survives a bad conversion or synthesis: outputs are written beside
`--out` and swapped in only when complete (pose3d.data.staging; issue 16 item 1)."""

from __future__ import annotations

import os

import pytest

from pose3d import cli
from pose3d.data import motion
from pose3d.data.shards import load_manifest, write_manifest
from pose3d.data.staging import staged_dataset

SYNTH = ["--labeled", "S5", "--unlabeled", "", "--eval", "", "--actions", motion.ACTIONS[0],
         "--clips-per-action", "1", "--frames-per-clip", "2", "--frame-step", "1",
         "--image-size", "32", "--no-progress"]


def _fake_dataset(folder, shards=("labeled-000000.tar",)):
    """A dataset folder with recognisable bytes (nothing here reads the tars)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in shards:
        (folder / name).write_bytes(b"old shard " + name.encode())
    write_manifest(folder, {"roles": {"labeled": {"samples": 1, "subjects": ["S1"],
                                                   "shards": [{"file": shards[0],
                                                               "samples": 1}]}}})
    return folder


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _no_partials(parent):
    return not [p for p in parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("dataset", ["h36m", "mpi-inf-3dhp"])
def test_overwrite_with_a_bad_root_keeps_the_old_dataset(tmp_path, capsys, dataset):
    out = _fake_dataset(tmp_path / "x")
    before = _snapshot(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli.main(["convert", dataset, "--source", str(empty), "--out", str(out),
                     "--overwrite", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith(f"pose3d convert {dataset}: error")
    assert _snapshot(out) == before and _no_partials(tmp_path)


def test_a_failure_mid_write_keeps_the_old_dataset(tmp_path):
    out = _fake_dataset(tmp_path / "x")
    before = _snapshot(out)
    with pytest.raises(RuntimeError, match="input broke"), \
            staged_dataset(out, overwrite=True) as tmp:
        (tmp / "labeled-000000.tar").write_bytes(b"half a new shard")
        raise RuntimeError("input broke")
    assert _snapshot(out) == before and _no_partials(tmp_path)
    with pytest.raises(ValueError, match="nothing was written"), \
            staged_dataset(out, overwrite=True) as tmp:
        (tmp / "labeled-000000.tar").write_bytes(b"shards but no manifest")
    assert _snapshot(out) == before and _no_partials(tmp_path)


def test_a_swap_that_fails_between_its_renames_keeps_the_old_dataset(tmp_path, monkeypatch):
    """The swap moves the old folder aside, then the new one in: when the second rename
    fails (a full disk's journal, a network file system), the old folder is back, whole."""
    out = _fake_dataset(tmp_path / "x", shards=("labeled-000000.tar", "labeled-000001.tar"))
    before = _snapshot(out)
    real_rename = os.rename

    def rename(src, dst):
        if os.fspath(src).startswith(os.fspath(tmp_path / ".x.partial-")):
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output error"), \
            staged_dataset(out, overwrite=True) as tmp:
        _fake_dataset(tmp, shards=("labeled-000000.tar",))
        (tmp / "labeled-000000.tar").write_bytes(b"the new shard")
    assert _snapshot(out) == before and _no_partials(tmp_path)


def test_synth_needs_overwrite_and_leaves_no_stale_shards(tmp_path, capsys):
    out = _fake_dataset(tmp_path / "x", shards=("labeled-000000.tar", "labeled-000099.tar"))
    before = _snapshot(out)
    assert cli.main(["synth", "--out", str(out), *SYNTH]) == 2
    assert "--overwrite" in capsys.readouterr().err and _snapshot(out) == before
    assert cli.main(["synth", "--out", str(out), *SYNTH, "--overwrite"]) == 0
    manifest = load_manifest(out)
    listed = {s["file"] for role in manifest["roles"].values() for s in role["shards"]}
    on_disk = {p.name for p in out.glob("*.tar")}
    assert on_disk == listed and "labeled-000099.tar" not in on_disk
    assert (out / "labeled-000000.tar").read_bytes() != before["labeled-000000.tar"]
    assert _no_partials(tmp_path)


def test_overwrite_refuses_a_folder_with_other_files(tmp_path, capsys):
    out = _fake_dataset(tmp_path / "x")
    (out / "notes.txt").write_text("my work")
    assert cli.main(["synth", "--out", str(out), *SYNTH, "--overwrite"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "my work"


@pytest.mark.parametrize("args, words", [
    (["--actions", "flying"], "unknown actions"),
    (["--image-size", "0"], "multiple of 32"),
    (["--image-size", "100"], "multiple of 32"),
])
def test_synth_bad_options_are_one_line(tmp_path, capsys, args, words):
    out = tmp_path / "new"
    assert cli.main(["synth", "--out", str(out), *SYNTH, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d synth: error:") and "\n" not in err and words in err
    assert not out.exists() and _no_partials(tmp_path)


@pytest.mark.parametrize("command", ["synth", "demo"])
def test_an_unwritable_output_folder_is_one_line(read_only_dir, capsys, command):
    locked = read_only_dir
    code = cli.main([command, "--out", str(locked / "data"),
                     *(SYNTH if command == "synth" else [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not writable" in err and "\n" not in err
    assert err.startswith(f"pose3d {command}: error:") and not (locked / "data").exists()
