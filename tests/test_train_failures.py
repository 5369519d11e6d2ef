"""What stops a training run, and how (issue 16, items 9 and 10): a mid-epoch resume with
fewer batches per epoch, a full disk while saving, an unwritable run folder, and a NaN loss
that torchrun would otherwise retry."""

from __future__ import annotations

import errno
import os

import pytest
from test_train_loop import run_toy
from train_helpers import TINY, torchrun

from pose3d.train import checkpoint
from pose3d.train.cli import EXIT_BAD_INPUT, EXIT_NON_FINITE


def test_mid_epoch_resume_with_fewer_batches_per_epoch_is_one_line(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("POSE3D_TEST_NAN_AT_STEP", "4")  # stop after 3 of 4 batches
    args = ("optim.sv_pretrain.epochs=1", "run.ckpt_every_steps=1")
    assert run_toy(tmp_path, *args, "data.batches_per_epoch=4") == EXIT_NON_FINITE
    monkeypatch.delenv("POSE3D_TEST_NAN_AT_STEP")
    capsys.readouterr()
    assert run_toy(tmp_path, *args, "data.batches_per_epoch=2") == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "batch 3 of epoch 0" in err
    assert "data.batches_per_epoch=4" in err and "run.resume=none" in err
    # with the value it was written with, it continues at the next batch
    assert run_toy(tmp_path, *args, "data.batches_per_epoch=4") == 0
    last = checkpoint.load(tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt")
    assert (last["step"], last["epoch"]) == (4, 1)


def test_a_full_disk_while_saving_names_the_folder(tmp_path, capsys, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    assert run_toy(tmp_path, "optim.sv_pretrain.epochs=1") == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    folder = tmp_path / "sv_pretrain" / "checkpoints"
    assert "\n" not in err and f"cannot save a checkpoint in {folder}" in err
    assert "No space left on device" in err
    assert not list(folder.glob(".*tmp*"))  # no half-written file left behind


def test_an_unwritable_run_folder_is_one_line_before_any_work(read_only_dir, capsys):
    locked = read_only_dir
    code = run_toy(locked / "run")
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT and "\n" not in err and "is not writable" in err
    assert not (locked / "run").exists()


@pytest.mark.slow
def test_torchrun_does_not_rerun_a_nan_loss(tmp_path):
    proc = torchrun(1, ["tests/train_toy.py", "--config", TINY, f"run.root={tmp_path}",
                        "optim.sv_pretrain.epochs=1"],
                    {"POSE3D_TEST_NAN_AT_STEP": "2"}, max_restarts=2)
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert log.count("non-finite loss at step 2") == 3  # the failure, then named twice
    assert log.count("not retrying: attempt") == 2, log[-3000:]
    # the restarted attempts did no work: one training step was logged, by the first
    metrics = (tmp_path / "sv_pretrain" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1
