"""Tracebacks where one line belongs (issue 26): a W&B folder that cannot be written, and a
model.*.backbone_weights file that is not a state dict. Both stop the run before any step,
with one line on stderr and exit status 2."""

from __future__ import annotations

import os
import pickle
import sys

import pytest
import torch
from test_train_loop import run_toy
from train_data import write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.train.cli import EXIT_BAD_INPUT


def _one_line(capsys, expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d train: error: ") and "\n" not in err, err
    assert expected in err, err


@pytest.mark.parametrize("how", ["a_file", "unwritable"])
def test_a_wandb_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch, how):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "sv_pretrain"
    run_dir.mkdir()
    if how == "a_file":
        (run_dir / "wandb").write_text("in the way")
    else:
        (run_dir / "wandb").mkdir()
        (run_dir / "wandb").chmod(0o500)
        if os.geteuid() == 0:  # root may write anywhere: make os.access say what the bits say
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, mode: False
                                if str(p) == str(run_dir / "wandb") else real(p, mode))
    try:
        code = run_toy(tmp_path, "run.wandb=offline", "optim.sv_pretrain.epochs=1")
    finally:
        if how == "unwritable":
            (run_dir / "wandb").chmod(0o700)
    assert code == EXIT_BAD_INPUT
    _one_line(capsys, {"a_file": "is not a folder", "unwritable": "is not writable"}[how])
    assert not (run_dir / "checkpoints").exists()  # stopped before any step


class _Planted:
    def __reduce__(self):
        return (print, ("ran",))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("tiny") / "data"
    write_tiny_dataset(data, frames=2, image_size=64)
    return data


@pytest.mark.parametrize("content", ["text", "a_list", "pickled_object", "empty"])
def test_backbone_weights_that_are_not_a_state_dict_are_one_line(tiny_data, tmp_path, capsys,
                                                                content):
    weights = tmp_path / "weights.pth"
    if content == "text":
        weights.write_text("these are not weights\n")
    elif content == "a_list":
        torch.save([1, 2, 3], weights)
    elif content == "pickled_object":
        weights.write_bytes(pickle.dumps(_Planted()))
    else:
        weights.write_bytes(b"")
    code = cli.main(["train", "--config", TINY, f"data.root={tiny_data}",
                     f"run.root={tmp_path / 'run'}", f"model.sv.backbone_weights={weights}"])
    assert code == EXIT_BAD_INPUT
    _one_line(capsys, f"weights file {weights}")
    assert not (tmp_path / "run" / "sv_pretrain" / "checkpoints").exists()


def _fake_wandb(monkeypatch, failures: list[Exception]):
    """A stand-in `wandb` module whose init raises each of `failures` once, then succeeds."""
    import types

    calls = []

    def init(**kwargs):
        calls.append(kwargs["id"])
        if failures:
            raise failures.pop(0)
        return types.SimpleNamespace(id=kwargs["id"], finish=lambda: None)

    fake = types.SimpleNamespace(init=init, Settings=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr("pose3d.train.logger.time.sleep", lambda s: None)
    return calls


def test_a_restarted_worker_waits_for_its_wandb_run_id_to_be_released(tmp_path, monkeypatch):
    """A run id still open in the W&B service ("in use"; see the test below for why a
    worker's own service makes that rare): the resumed run waits and appends to the same
    run instead of failing; another error is raised at once."""
    from pose3d.train.config import load_config
    from pose3d.train.logger import Logger

    cfg = load_config(TINY, ["run.wandb=offline"])
    (tmp_path / "wandb_id.txt").write_text("3e91ea05")
    calls = _fake_wandb(monkeypatch, [RuntimeError("run ID 3e91ea05 is in use")] * 2)
    logger = Logger(cfg, tmp_path, is_main=True)
    assert logger.run.id == "3e91ea05" and calls == ["3e91ea05"] * 3
    logger.close()
    _fake_wandb(monkeypatch, [RuntimeError("something else")])
    with pytest.raises(RuntimeError, match="something else"):
        Logger(cfg, tmp_path, is_main=True)


def test_a_worker_starts_its_own_wandb_service_and_keeps_it(tmp_path, monkeypatch):
    """A WANDB_SERVICE inherited from the launcher names another process's service: the
    worker does not join it (a killed worker's run would stay open there, tests/
    test_train_loop.py shows why); the service it started for one run serves its next."""
    from pose3d.train.config import load_config
    from pose3d.train.logger import Logger

    monkeypatch.setenv("WANDB_SERVICE", "3-1-unix-/tmp/the-launchers-socket")
    monkeypatch.setattr("pose3d.train.logger._own_service", None)
    _fake_wandb(monkeypatch, [])
    seen, init = [], sys.modules["wandb"].init

    def init_as_wandb_does(**kwargs):
        seen.append(os.environ.get("WANDB_SERVICE"))
        os.environ["WANDB_SERVICE"] = "3-2-unix-/tmp/this-workers-socket"  # wandb saves its own
        return init(**kwargs)

    monkeypatch.setattr(sys.modules["wandb"], "init", init_as_wandb_does)
    cfg = load_config(TINY, ["run.wandb=offline"])
    for run in ("first", "second"):
        Logger(cfg, tmp_path / run, is_main=True).close()
    assert seen == [None, "3-2-unix-/tmp/this-workers-socket"]


@pytest.mark.parametrize("value", ["!!python/object/apply:os.system ['echo ran']", "[",
                                   "{a: 1", "'unclosed", "!!binary x"])
def test_an_override_that_is_not_plain_yaml_is_one_line(tmp_path, capsys, value):
    """issue 32 item 16: a YAML tag or a bracket in an override; nothing runs."""
    code = cli.main(["train", "--config", TINY, f"run.root={tmp_path}", f"run.seed={value}"])
    assert code == EXIT_BAD_INPUT
    _one_line(capsys, f"override 'run.seed={value}' is not a YAML value"
              if "'" not in value else "is not a YAML value")
    assert list(tmp_path.iterdir()) == []
