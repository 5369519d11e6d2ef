"""`pose3d eval` on bad input: one line on stderr, exit 2, and nothing written (issue 16)."""

from __future__ import annotations

import json

import pytest
import torch
from train_data import write_tiny_dataset

from pose3d import cli
from pose3d.models import build_model
from pose3d.models.saved import fingerprint

SV = {"kind": "single_view", "backbone": "resnet10", "deconv_channels": 8, "num_deconv": 1,
      "depth_bins": 4, "depth_range_mm": 2000.0}
MV = {"kind": "multi_view", "backbone": "resnet10", "deconv_channels": 8, "num_deconv": 1}


def _save(path, arch, image_size=32):
    torch.manual_seed(0)
    model = build_model(arch)
    torch.save({"model": model.state_dict(), "fingerprint": fingerprint(model, arch),
                "config": f"data:\n  image_size: {image_size}\n"}, path)
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cli")
    write_tiny_dataset(root / "data", frames=2, image_size=32)
    (root / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (root / "a_file").write_text("x")
    return {"root": root, "data": str(root / "data"), "sv": _save(root / "sv.pt", SV),
            "sv64": _save(root / "sv64.pt", SV, image_size=64), "mv": _save(root / "mv.pt", MV),
            "garbage": str(root / "garbage.pt"), "file": str(root / "a_file")}


def _eval(capsys, *args):
    code = cli.main(["eval", *args])
    return code, capsys.readouterr()


CASES = {  # name -> (arguments with {placeholders}, words of the message)
    "missing checkpoint": (["--checkpoint", "A={root}/nope.pt"], ["no checkpoint at"]),
    "missing data": (["--data", "{root}/nowhere"], ["no such dataset folder"]),
    "unknown role": (["--role", "bogus"], ["no 'bogus' shards"]),
    "role without ground truth": (["--role", "unlabeled"], ["no 3D ground truth"]),
    "garbage checkpoint": (["--checkpoint", "B={garbage}"], ["cannot read checkpoint"]),
    "multi-view checkpoint": (["--checkpoint", "B={mv}"], ["multi_view", "not a single_view"]),
    "batch size 0": (["--batch-size", "0"], ["--batch-size must be >= 1"]),
    "out is a file": (["--out", "{file}"], ["is not a folder"]),
    "same name twice": (["--checkpoint", "A={sv}"], ["two checkpoints are named 'A'"]),
    "other image size": (["--checkpoint", "B={sv64}"], ["trained on 64 px", "holds 32 px"]),
    # issue 32 item 19: the names become predictions_NAME.npz and figures/NAME_i.png
    "name leaves --out": (["--checkpoint", "../../x={sv}"], ["'../../x'", "plain file name"]),
    "name with a folder": (["--checkpoint", "a/b={sv}"], ["'a/b'", "plain file name"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_before_out_is_created(inputs, tmp_path, capsys, case):
    extra, words = CASES[case]
    args = {"--data": inputs["data"], "--out": str(tmp_path / "out"), "--device": "cpu"}
    checkpoints = ["--checkpoint", f"A={inputs['sv']}"]
    extra = [e.format(**inputs) for e in extra]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag == "--checkpoint":
            checkpoints += [flag, value]
        else:
            args[flag] = value
    code, out = _eval(capsys, *[x for kv in args.items() for x in kv], *checkpoints)
    err = out.err.strip()
    assert code == 2, err
    assert err.startswith("pose3d eval: error: ") and "\n" not in err, err
    for w in words:
        assert w in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(inputs, tmp_path, capsys):
    code, out = _eval(capsys, "--data", inputs["data"], "--out", str(tmp_path / "out"),
                      "--checkpoint", f"A={inputs['sv']}", "--device", "cuda")
    assert code == 2 and "no CUDA device" in out.err and not (tmp_path / "out").exists()


def test_read_only_out(inputs, read_only_dir, capsys):
    locked = read_only_dir
    code, out = _eval(capsys, "--data", inputs["data"], "--out", str(locked / "out"),
                      "--checkpoint", f"A={inputs['sv']}", "--device", "cpu")
    assert code == 2 and "cannot write in" in out.err and not (locked / "out").exists()


def test_good_input_writes_the_report(inputs, tmp_path, capsys):
    code, out = _eval(capsys, "--data", inputs["data"], "--out", str(tmp_path / "out"),
                      "--checkpoint", f"A={inputs['sv']}", "--device", "cpu",
                      "--figures", "0", "--batch-size", "2")
    assert code == 0, out.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "all" in report["A"]["camera"]
    # its own folder is its to write again (the .pose3d-eval marker, pose3d.out_folder)
    assert (tmp_path / "out" / ".pose3d-eval").is_file()
    code, out = _eval(capsys, "--data", inputs["data"], "--out", str(tmp_path / "out"),
                      "--checkpoint", f"A={inputs['sv']}", "--device", "cpu",
                      "--figures", "0", "--batch-size", "2")
    assert code == 0, out.err


def test_a_wandb_folder_in_the_way_is_one_line_before_the_work(inputs, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".pose3d-eval").touch()  # an earlier evaluation's folder
    (tmp_path / "out" / "wandb").write_text("in the way")
    code, out = _eval(capsys, "--data", inputs["data"], "--out", str(tmp_path / "out"),
                      "--checkpoint", f"A={inputs['sv']}", "--device", "cpu",
                      "--wandb", "offline")
    err = out.err.strip()
    assert code == 2 and err.startswith("pose3d eval: error: ") and "\n" not in err, err
    assert "W&B folder" in err and "is not a folder" in err
    assert not (tmp_path / "out" / "report.json").exists()  # refused before the work
