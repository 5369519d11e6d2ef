"""The P-GT stage against hostile input (issue 32, items 4 and 10): a name read from a shard
never becomes a path (a role `../../../X` is a skipped sample, nothing is written outside
data.pgt_root and run.root), and the stage removes only a staging folder it made."""

from __future__ import annotations

import json

import pytest
from train_data import forge_meta, save_untrained_model, write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.data import schema
from pose3d.data.shards import ShardSetWriter, load_manifest, shards_for_role
from pose3d.train.pgt import PARTIAL_MARKER

SIZE = 32


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny studio whose first unlabeled shard holds a tuple with role '../../../X', one
    with subject '../../S7' and one with role 'eval', and an untrained F_mv."""
    root = tmp_path_factory.mktemp("pgt_safety")
    data = root / "data"
    write_tiny_dataset(data, frames=4, image_size=SIZE, samples_per_shard=3)
    forged = forge_meta(shards_for_role(data, "unlabeled")[0],
                        [{"role": "../../../X"}, {"subject": "../../S7"}, {"role": "eval"}])
    save_untrained_model(root / "mv.pt")
    return data, root / "mv.pt", forged


def _pgt(inputs, where, *extra) -> int:
    data, mv, _ = inputs
    return cli.main(["train", "--config", TINY, "stage=pgt", f"data.root={data}",
                     f"data.image_size={SIZE}", f"pgt.checkpoint={mv}",
                     f"run.root={where / 'a' / 'b' / 'run'}",
                     f"data.pgt_root={where / 'a' / 'b' / 'pgt'}", *extra])


def test_names_read_from_shards_never_become_paths(inputs, tmp_path, capsys):
    _, _, forged = inputs
    assert _pgt(inputs, tmp_path) == 0, capsys.readouterr().err
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.tar"))
    assert written and all(p.startswith("a/b/pgt/unlabeled-") for p in written), written
    pgt = tmp_path / "a" / "b" / "pgt"
    assert sorted(load_manifest(pgt)["roles"]) == ["unlabeled"]
    report = json.loads((tmp_path / "a" / "b" / "run" / "pgt" / "pgt_report.json").read_text())
    assert report["skipped_samples"] == 2  # the forged role and subject: bad samples
    assert report["dropped"] >= 1  # the eval tuple: not labeled
    assert not any(f"{key}." in name for key in forged
                   for name in _member_names(pgt))


def _member_names(folder) -> list[str]:
    import tarfile

    names = []
    for shard in folder.glob("*.tar"):
        with tarfile.open(shard) as tar:
            names += tar.getnames()
    return names


@pytest.mark.parametrize("field, value", [("role", "../../../X"), ("role", "eval/x"),
                                          ("subject", "../S1")])
def test_the_shard_writer_refuses_a_name_that_is_not_plain(tmp_path, field, value):
    meta = {"subject": "S1", "action": "a", "frame": 0, "role": "unlabeled", "image_size": 32,
            field: value}
    sample = {"__key__": "S1-a-0000-000000", schema.META_FILE: json.dumps(meta).encode()}
    with ShardSetWriter(tmp_path / "out") as writer, pytest.raises(ValueError, match=field):
        writer.write(sample)
    assert not list(tmp_path.rglob("*.tar"))


def test_a_users_folder_named_like_the_staging_folder_is_refused_not_deleted(inputs, tmp_path,
                                                                            capsys):
    mine = tmp_path / "a" / "b" / ".pgt.partial"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    assert _pgt(inputs, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d train: error: ") and "\n" not in err, err
    assert str(mine) in err and PARTIAL_MARKER in err
    assert (mine / "notes.txt").read_text() == "my notes"
    assert not (tmp_path / "a" / "b" / "run").exists()  # refused before any work


def test_its_own_staging_folder_is_removed_and_none_is_left(inputs, tmp_path, capsys):
    ours = tmp_path / "a" / "b" / ".pgt.partial"
    (ours / "rank0").mkdir(parents=True)
    (ours / PARTIAL_MARKER).write_text("a killed run's")
    (ours / "rank0" / "unlabeled-000000.tar").write_bytes(b"half a shard")
    assert _pgt(inputs, tmp_path) == 0, capsys.readouterr().err
    assert not ours.exists()
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["pgt", "run"]
    assert PARTIAL_MARKER not in [p.name for p in (tmp_path / "a" / "b" / "pgt").iterdir()]
