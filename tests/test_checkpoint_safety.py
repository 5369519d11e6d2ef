"""A checkpoint cannot run code (issue 26): a crafted .pt whose unpickling would write a
marker file is refused, in one line naming the file, by every entry point that loads one;
the marker never appears. The trainer's own checkpoints (numpy RNG state included) load."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from train_data import write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.models import CheckpointError, build_model, load_model
from pose3d.models.saved import fingerprint, read_checkpoint
from pose3d.train import checkpoint
from pose3d.train.cli import EXIT_BAD_INPUT, add_arguments
from pose3d.train.cli import main as train_main
from pose3d.train.distributed import rng_state

SIZE = 32
SV = {"kind": "single_view", "backbone": "resnet10", "deconv_channels": 8, "num_deconv": 1,
      "depth_bins": 4, "depth_range_mm": 2000.0}


class _WritesMarker:
    """Unpickling this calls exec(), which writes `marker`: what an attacker's file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt_safety")
    write_tiny_dataset(root / "data", frames=2, image_size=SIZE)
    torch.manual_seed(0)
    model = build_model(SV)
    marker = root / "marker"
    evil = root / "evil.pt"
    # a real checkpoint's contents, so that only the payload can be the reason for refusal
    torch.save({"model": model.state_dict(), "fingerprint": fingerprint(model, SV),
                "config": f"data:\n  image_size: {SIZE}\n", "step": 1,
                "payload": _WritesMarker(marker)}, evil)
    (root / "frame.png").write_bytes(_png())
    return {"root": root, "evil": evil, "marker": marker, "data": root / "data"}


def _png() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.zeros((SIZE, SIZE, 3), np.uint8))
    assert ok
    return buf.tobytes()


def _one_line_refusal(err: str, path: Path) -> None:
    err = err.strip()
    assert "\n" not in err, err
    assert f"refusing checkpoint {path}" in err and "exec" in err, err


def test_read_checkpoint_refuses_code_and_runs_none(files):
    for reader in (read_checkpoint, load_model, checkpoint.load):
        with pytest.raises(CheckpointError) as exc:
            reader(files["evil"])
        _one_line_refusal(str(exc.value), files["evil"])
    assert not files["marker"].exists()


def test_os_system_in_a_checkpoint_is_refused(tmp_path):
    import os

    class Shell:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'marker'}",)

    torch.save({"model": {}, "x": Shell()}, tmp_path / "shell.pt")
    with pytest.raises(CheckpointError, match="refusing checkpoint .*shell.pt: it holds "
                                              r"\w+\.system"):
        read_checkpoint(tmp_path / "shell.pt")
    assert not (tmp_path / "marker").exists()


def test_the_trainers_checkpoint_contents_still_load(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": torch.amp.GradScaler(enabled=False).state_dict(), "step": 1,
             "rng": [rng_state()], "config": "a: 1\n"}
    path = checkpoint.save(state, tmp_path, step=1)
    loaded = checkpoint.load(path)
    numpy_state = loaded["rng"][0]["numpy"]
    assert numpy_state[0] == "MT19937"
    assert np.array_equal(numpy_state[1], state["rng"][0]["numpy"][1])
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])


def test_eval_and_predict_refuse_it(files, tmp_path, capsys):
    evil = files["evil"]
    code = cli.main(["eval", "--checkpoint", str(evil), "--data", str(files["data"]),
                     "--out", str(tmp_path / "eval")])
    assert code == 2
    _one_line_refusal(capsys.readouterr().err, evil)
    code = cli.main(["predict", "--checkpoint", str(evil), str(files["root"] / "frame.png"),
                     "--out", str(tmp_path / "predict"), "--no-progress", "--device", "cpu"])
    assert code == 2
    _one_line_refusal(capsys.readouterr().err, evil)
    assert not files["marker"].exists()


def _train(*args: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return train_main(parser.parse_args(["--config", TINY, *args]))


@pytest.mark.parametrize("stage, args", [
    ("sv_pretrain", ["--resume", "{evil}"]),
    ("finetune", ["model.sv.weights_path={evil}", "data.use_pgt=false"]),
    ("pgt", ["pgt.checkpoint={evil}"]),
], ids=["resume", "weights_path", "pgt_checkpoint"])
def test_training_entry_points_refuse_it(files, tmp_path, capsys, stage, args):
    args = [a.format(evil=files["evil"], data=files["data"]) for a in args]
    code = _train(*args, f"stage={stage}", f"data.root={files['data']}",
                  f"data.image_size={SIZE}", f"run.root={tmp_path}", "data.batches_per_epoch=1",
                  f"optim.{stage}.epochs=1", f"optim.{stage}.batch_size=1")
    assert code == EXIT_BAD_INPUT
    _one_line_refusal(capsys.readouterr().err, files["evil"])
    assert not files["marker"].exists()


def test_a_checkpoint_written_under_numpy_1_still_loads(tmp_path):
    """numpy 1 pickles the RNG state's array builder as numpy.core.multiarray (numpy 2:
    numpy._core.multiarray): the same file's pickle, renamed so, must load the same."""
    import zipfile

    state = {"model": torch.nn.Linear(2, 2).state_dict(), "rng": [rng_state()]}
    torch.save(state, tmp_path / "np2.pt")
    with zipfile.ZipFile(tmp_path / "np2.pt") as src, \
            zipfile.ZipFile(tmp_path / "np1.pt", "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)
    if torch.__version__ < (2, 6):
        pytest.skip("torch < 2.6 cannot allow one function under two names")
    loaded = read_checkpoint(tmp_path / "np1.pt")
    assert np.array_equal(loaded["rng"][0]["numpy"][1], state["rng"][0]["numpy"][1])
