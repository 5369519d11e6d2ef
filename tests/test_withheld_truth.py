"""The unlabeled tuples' withheld truth on converted data (the release fixture,
tests/h36m_release_data.py): no training stage reads it (a poisoned withheld file changes
no batch and no loss), and the P-GT stage scores its labels against it."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from h36m_release_data import SPLITS, build_release, pose_at
from train_data import raw_samples, save_untrained_model, write_pgt_folder
from train_helpers import TINY

from pose3d import cli, experiment
from pose3d.data import schema
from pose3d.data.convert.h36m_official import H36MReleaseOptions, convert_h36m_release
from pose3d.data.loader import iterate_samples
from pose3d.data.shards import ShardSetWriter
from pose3d.train.agreeing import write_agreeing_pgt
from pose3d.train.config import load_config
from pose3d.train.distributed import DistInfo
from pose3d.train.oracle import is_current as oracle_is_current
from pose3d.train.oracle import pgt_digest, write_oracle_pgt
from pose3d.train.registry import make_stage
from pose3d.train.stage_base import StepContext

SIZE = 32  # the smallest input the ResNet trunk takes


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("withheld")
    root = base / "h36m"
    root.mkdir()
    build_release(root)
    options = H36MReleaseOptions(image_size=SIZE, splits=dict(SPLITS), frame_step=4,
                                 eval_frame_step=4, metadata=root / "metadata.xml")
    convert_h36m_release(root, base / "data", options, progress=False)
    return base / "data"


def _poisoned_copy(src: Path, dst: Path) -> int:
    """`src` copied to `dst` with every withheld truth replaced by NaN; returns how many."""
    dst.mkdir(parents=True)
    nan = io.BytesIO()
    np.save(nan, np.full((17, 3), np.nan, np.float32))
    poisoned = 0
    for path in src.iterdir():
        if path.suffix != ".tar":
            (dst / path.name).write_bytes(path.read_bytes())
            continue
        with tarfile.open(path) as tar_in, tarfile.open(dst / path.name, "w") as tar_out:
            for member in tar_in.getmembers():
                data = tar_in.extractfile(member).read()
                if member.name.endswith("." + schema.WITHHELD_FILE):
                    data, poisoned = nan.getvalue(), poisoned + 1
                member.size = len(data)
                tar_out.addfile(member, io.BytesIO(data))
    return poisoned


def _epoch(stage_name: str, data: Path, pgt: Path, run: Path, extra: list[str] = ()
           ) -> tuple[list[dict], dict]:
    """One epoch of the stage's training batches and the loss of a step on the first."""
    cfg = load_config(TINY, [f"stage={stage_name}", f"data.root={data}",
                             f"data.pgt_root={pgt}", f"data.image_size={SIZE}",
                             f"run.root={run}", "data.batches_per_epoch=3",
                             f"optim.{stage_name}.batch_size=2", *extra])
    stage = make_stage(stage_name)
    torch.manual_seed(0)
    model = stage.build_model(cfg)
    stage.prepare(cfg, model)
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    batches = list(stage.train_loader(cfg, 0, info))
    out = stage.step(model, batches[0], StepContext(info.device, False))
    return batches, {"loss": out.loss.detach(), **out.metrics}


@pytest.mark.slow
@pytest.mark.parametrize("stage_name", ["mv_pretrain", "sv_pretrain", "finetune"])
def test_no_training_stage_reads_the_withheld_truth(converted, tmp_path, stage_name):
    pgt = tmp_path / "pgt"
    write_pgt_folder(converted, pgt, offset_mm=30.0)
    assert _poisoned_copy(converted, tmp_path / "data_poisoned") > 0
    assert _poisoned_copy(pgt, tmp_path / "pgt_poisoned") > 0
    clean, clean_loss = _epoch(stage_name, converted, pgt, tmp_path / "run")
    poisoned, poisoned_loss = _epoch(stage_name, tmp_path / "data_poisoned",
                                     tmp_path / "pgt_poisoned", tmp_path / "run_poisoned")
    _assert_same(clean, clean_loss, poisoned, poisoned_loss, stage_name)


def _assert_same(clean: list[dict], clean_loss: dict, poisoned: list[dict],
                 poisoned_loss: dict, what: str) -> None:
    assert len(clean) == len(poisoned) == 3
    for a, b in zip(clean, poisoned):
        assert a.keys() == b.keys()
        for name, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[name]), (what, name)
            else:
                assert value == b[name], (what, name)
    assert torch.isfinite(clean_loss["loss"])
    for name, value in clean_loss.items():
        assert torch.equal(value, poisoned_loss[name]), (what, name)


@pytest.mark.slow
def test_only_the_oracle_arm_reads_the_withheld_truth(converted, tmp_path):
    """Every fine-tuning arm but the Oracle trains on the same batches and losses when the
    withheld truth is NaN (L1-agree's share chosen from the poisoned P-GT too); the
    Oracle's labels come from it (and so cannot be made)."""
    teacher = str(save_untrained_model(tmp_path / "teacher.pt"))
    write_pgt_folder(converted, tmp_path / "pgt", offset_mm=30.0, checkpoint=teacher)
    _poisoned_copy(converted, tmp_path / "data_poisoned")
    _poisoned_copy(tmp_path / "pgt", tmp_path / "pgt_poisoned")
    for arm, overrides in experiment.arms().items():
        if arm == experiment.ORACLE:
            continue
        runs = []
        for data, pgt, run in ((converted, "pgt", "run"),
                               (tmp_path / "data_poisoned", "pgt_poisoned", "run_poisoned")):
            if arm == experiment.AGREE:
                write_agreeing_pgt(tmp_path / pgt, tmp_path / run / experiment.AGREE_PGT, data,
                                   experiment.AGREE_KEEP)
            runs += _epoch("finetune", data, tmp_path / pgt, tmp_path / run, overrides)
        _assert_same(*runs, arm)
    write_oracle_pgt(tmp_path / "pgt", tmp_path / "run" / experiment.ORACLE_PGT, converted)
    with pytest.raises(ValueError, match="nothing was written"):
        write_oracle_pgt(tmp_path / "pgt_poisoned",
                         tmp_path / "run_poisoned" / experiment.ORACLE_PGT, converted)


def test_oracle_labels_are_the_withheld_truth_of_the_labeled_tuples(converted, tmp_path):
    write_pgt_folder(converted, tmp_path / "pgt", offset_mm=30.0)
    raws = raw_samples(converted, "unlabeled")
    truth = {r["__key__"]: np.load(io.BytesIO(r[schema.WITHHELD_FILE])) for r in raws}
    # one tuple's truth is unusable: the Oracle leaves it out, as the teacher leaves out a
    # tuple it cannot triangulate
    dropped = sorted(truth)[0]
    with ShardSetWriter(tmp_path / "pgt_one_bad", 4) as writer:
        for raw in raw_samples(tmp_path / "pgt", "unlabeled"):
            if raw["__key__"] == dropped:
                nan = io.BytesIO()
                np.save(nan, np.full((17, 3), np.nan, np.float32))
                raw = {**raw, schema.WITHHELD_FILE: nan.getvalue()}
            writer.write(raw)
        writer.close(pgt={"mpjpe_mm": 30.0})
    record = write_oracle_pgt(tmp_path / "pgt_one_bad", tmp_path / "runs" / "oracle", converted)
    assert record == {"source": "oracle", "from": str(tmp_path / "pgt_one_bad"),
                      "from_sha256": pgt_digest(tmp_path / "pgt_one_bad"),
                      "tuples": len(truth), "labeled": len(truth) - 1, "dropped": 1}
    labels = {s.key: s.pgt for s in iterate_samples(str(tmp_path / "runs" / "oracle"))}
    assert set(labels) == set(truth) - {dropped}
    for key, label in labels.items():  # the P-GT was truth + 30 mm: now the truth itself
        np.testing.assert_array_equal(label, truth[key].astype(np.float32))
    manifest = json.loads((tmp_path / "runs" / "oracle" / "manifest.json").read_text())
    assert list(manifest["roles"]) == ["unlabeled"] and manifest["pgt"] == record


def test_oracle_labels_are_made_again_when_the_pgt_content_changes(converted, tmp_path,
                                                                    capsys):
    """prepare_oracle reuses its folder while the P-GT is the same and makes it again when the
    P-GT's content changes, even when the new P-GT carries older mtimes (a copy)."""
    root = tmp_path / "runs"
    write_pgt_folder(converted, root / "pgt_shards", offset_mm=30.0)
    oracle = root / experiment.ORACLE_PGT
    experiment.prepare_oracle(root, converted, experiment.arms())
    assert "Oracle labels" in capsys.readouterr().out and oracle_is_current(oracle,
                                                                           root / "pgt_shards")
    experiment.prepare_oracle(root, converted, experiment.arms())
    assert capsys.readouterr().out == ""  # the same P-GT: reused
    write_pgt_folder(converted, tmp_path / "other", offset_mm=50.0)  # other labels
    shutil.rmtree(root / "pgt_shards")
    shutil.copytree(tmp_path / "other", root / "pgt_shards")
    old = (oracle / "manifest.json").stat().st_mtime_ns - 10**9
    for path in (root / "pgt_shards").iterdir():
        os.utime(path, ns=(old, old))
    assert not oracle_is_current(oracle, root / "pgt_shards")
    experiment.prepare_oracle(root, converted, experiment.arms())
    assert "Oracle labels" in capsys.readouterr().out
    assert oracle_is_current(oracle, root / "pgt_shards")


@pytest.mark.slow
def test_pgt_stage_scores_its_labels_against_the_withheld_truth(converted, tmp_path, capsys):
    common = ["--config", TINY, f"data.root={converted}", f"data.image_size={SIZE}",
              f"run.root={tmp_path}"]
    assert cli.main(["train", *common, "stage=mv_pretrain", "optim.mv_pretrain.epochs=1",
                     "data.batches_per_epoch=1"]) == 0
    mv = tmp_path / "mv_pretrain" / "checkpoints" / "latest.pt"
    capsys.readouterr()
    assert cli.main(["train", *common, "stage=pgt", f"pgt.checkpoint={mv}"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pgt:")]
    report = json.loads((tmp_path / "pgt" / "pgt_report.json").read_text())
    assert len(printed) == 1 and f'"mpjpe_mm": {report["mpjpe_mm"]}' in printed[0]
    # the MPJPE against the fixture's poses (the CDF truth), root-aligned, by hand
    errors = []
    for s in iterate_samples(str(tmp_path / "pgt_shards")):
        truth = pose_at(s.meta["subject"], s.meta["source_file"], s.meta["frame"])
        errors.append(np.linalg.norm((s.pgt - s.pgt[0]) - (truth - truth[0]), axis=-1).mean())
    assert report["scored"] == report["labeled"] == len(errors) > 0
    assert report["mpjpe_mm"] == pytest.approx(np.mean(errors), rel=1e-4)
