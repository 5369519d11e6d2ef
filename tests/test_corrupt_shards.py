"""One rule for bad input: the same unreadable shard and corrupt tuple are skipped and
counted alike by the training loader, the evaluation loader and the P-GT stage; a P-GT run
that labels nothing fails in one line and keeps the previous P-GT."""

import argparse
import io
import json
import shutil
import tarfile
import warnings

import pytest
from train_data import write_tiny_dataset
from train_helpers import TINY, torchrun

from pose3d.data.loader import CorruptSampleWarning, make_eval_loader, make_train_loader
from pose3d.data.shards import resolve_shards
from pose3d.train import checkpoint
from pose3d.train.cli import EXIT_BAD_INPUT, add_arguments, main
from pose3d.train.config import load_config
from pose3d.train.registry import make_stage

SIZE = 32
GARBAGE = b"this is not a tar file" * 50


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Tiny dataset (6 unlabeled tuples in 2 shards of 3) and a fresh F_mv checkpoint."""
    root = tmp_path_factory.mktemp("corrupt")
    data = root / "data"
    write_tiny_dataset(data, frames=6, image_size=SIZE)
    cfg = load_config(TINY, [f"data.root={data}", f"data.image_size={SIZE}", "stage=mv_pretrain"])
    stage = make_stage("mv_pretrain")
    model = stage.build_model(cfg)
    ckpt = checkpoint.save({"model": model.state_dict(),
                            "fingerprint": checkpoint.fingerprint(model, stage.arch(cfg))},
                           root / "mv", step=1)
    return data, ckpt


def _corrupt_middle_jpeg(path) -> str:
    """Cut the view-1 JPEG of the shard's second tuple in place; returns that tuple's key."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    key = sorted({name.split(".")[0] for name, _ in members})[1]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            if name == f"{key}.view1.jpg":
                data = data[:len(data) // 3]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return key


@pytest.fixture
def damaged(clean, tmp_path):
    """A copy whose first unlabeled shard is not a tar and whose second has one corrupt
    tuple: 2 good unlabeled tuples, 1 unreadable shard, 1 corrupt tuple."""
    data = tmp_path / "data"
    shutil.copytree(clean[0], data)
    first, second = resolve_shards(str(data), "unlabeled")
    with open(first, "wb") as f:
        f.write(GARBAGE)
    return data, first, second, _corrupt_middle_jpeg(second)


def run_pgt(data, root, ckpt) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return main(parser.parse_args([
        "--config", TINY, f"data.root={data}", f"data.image_size={SIZE}", f"run.root={root}",
        "stage=pgt", f"pgt.checkpoint={ckpt}"]))


def test_training_evaluation_and_pgt_skip_and_count_a_corrupt_shard_alike(clean, damaged,
                                                                           tmp_path):
    data, first, second, bad_key = damaged
    urls = resolve_shards(str(data), "unlabeled")
    expected = {"tar": 1, "sample": 1}  # what the fixture broke

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluation = make_eval_loader(urls, 1)
        assert sum(1 for _ in evaluation) == 2
    assert dict(evaluation.skipped) == expected
    messages = [str(w.message) for w in caught if w.category is CorruptSampleWarning]
    assert any(first in m for m in messages)
    assert any(second in m and bad_key in m for m in messages)

    # One pass of training (seed 0 keeps the shard order): the two good tuples.
    training = make_train_loader(urls, 1, batches_per_epoch=2, shuffle_buffer=0, rank=0,
                                 world_size=1)
    assert sorted(k for b in training for k in b["key"]) == sorted(
        k for b in make_eval_loader(urls, 1) for k in b["key"])
    assert dict(training.skipped) == expected

    assert run_pgt(data, tmp_path, clean[1]) == 0
    report = json.loads((tmp_path / "pgt" / "pgt_report.json").read_text())
    assert {"tar": report["skipped_shards"], "sample": report["skipped_samples"]} == expected
    assert report["tuples"] == 3 and report["labeled"] <= 2
    assert not (tmp_path / ".pgt_shards.partial").exists()
    logged = json.loads((tmp_path / "pgt" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (logged["pgt/skipped_shards"], logged["pgt/skipped_samples"]) == (1, 1)


def test_pgt_that_labels_nothing_fails_in_one_line_and_keeps_the_previous_pgt(
        clean, damaged, tmp_path, capsys):
    data, first, second, _ = damaged
    with open(second, "wb") as f:
        f.write(GARBAGE)
    previous = tmp_path / "pgt_shards"
    previous.mkdir()
    (previous / "manifest.json").write_text('{"pgt": {}}')  # an earlier P-GT of ours
    assert run_pgt(data, tmp_path, clean[1]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "labeled none" in err
    assert [p.name for p in previous.iterdir()] == ["manifest.json"]
    assert (previous / "manifest.json").read_text() == '{"pgt": {}}'
    assert not (tmp_path / ".pgt_shards.partial").exists()


@pytest.mark.slow
def test_pgt_under_two_ranks_skips_the_bad_shard_and_counts_it_once(clean, damaged, tmp_path):
    data = damaged[0]
    proc = torchrun(2, ["-m", "pose3d.train", "--config", TINY, f"data.root={data}",
                        f"data.image_size={SIZE}", f"run.root={tmp_path}", "stage=pgt",
                        f"pgt.checkpoint={clean[1]}"], {})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "pgt" / "pgt_report.json").read_text())
    assert (report["skipped_shards"], report["skipped_samples"], report["tuples"]) == (1, 1, 3)
    assert not (tmp_path / ".pgt_shards.partial").exists()
