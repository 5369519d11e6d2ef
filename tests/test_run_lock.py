"""A run folder holds a lock while a run writes it (issue 32, item 11): a second `pose3d
train` into the same run.out_dir is refused in one line naming the holder's PID and writes
nothing; the lock goes with its process (a restarted worker group gets it back), and a child
forked while it is held (a DataLoader worker) does not keep it."""

from __future__ import annotations

import multiprocessing

import pytest
from train_data import save_untrained_model, write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.train.cli import FATAL_FILE
from pose3d.train.run_lock import RunFolderInUse, hold_run_folder, in_use

SIZE = 32
FORK = multiprocessing.get_context("fork")


def _hold(folder, ready, done) -> None:
    with hold_run_folder(folder):
        ready.set()
        done.wait(60)


def _wait(started, done) -> None:
    started.set()
    done.wait(60)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path / 'run' until the test ends."""
    ready, done = FORK.Event(), FORK.Event()
    proc = FORK.Process(target=_hold, args=(tmp_path / "run", ready, done), daemon=True)
    proc.start()
    assert ready.wait(60)
    yield proc
    done.set()
    proc.join(60)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_lock")
    write_tiny_dataset(root / "data", frames=2, image_size=SIZE)
    save_untrained_model(root / "mv.pt")
    return root


@pytest.mark.parametrize("stage", ["sv_pretrain", "pgt"])
def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(inputs, tmp_path, holder,
                                                                      capsys, stage):
    # the holder's record of a failure its restarted workers must not retry stays its own
    fatal = tmp_path / "run" / FATAL_FILE
    fatal.write_text('{"run_id": "none", "attempt": 0, "exit": 3, "message": "NaN"}\n')
    code = cli.main(["train", "--config", TINY, f"stage={stage}",
                     f"data.root={inputs / 'data'}", f"data.image_size={SIZE}",
                     f"run.root={tmp_path}", f"run.out_dir={tmp_path / 'run'}",
                     f"pgt.checkpoint={inputs / 'mv.pt'}", f"data.pgt_root={tmp_path / 'pgt'}",
                     "data.batches_per_epoch=1", f"optim.{stage}.epochs=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("pose3d train: error: ") and "\n" not in err, err
    assert f"in use by another run (PID {holder.pid})" in err, err
    written = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert written == [".run.lock", FATAL_FILE], written  # no checkpoint, config, metrics
    assert "NaN" in fatal.read_text()
    assert not (tmp_path / "pgt").exists() and not (tmp_path / ".pgt.partial").exists()


def test_the_lock_goes_with_its_process(tmp_path):
    """A killed run (SIGKILL: no cleanup) leaves the folder free for the next one, as a
    worker group torchrun restarts needs."""
    ready, done = FORK.Event(), FORK.Event()
    proc = FORK.Process(target=_hold, args=(tmp_path, ready, done), daemon=True)
    proc.start()
    assert ready.wait(60)
    with pytest.raises(RunFolderInUse, match=f"PID {proc.pid}"):
        with hold_run_folder(tmp_path):
            pass
    assert in_use(tmp_path)
    proc.kill()
    proc.join(60)
    assert not in_use(tmp_path)
    with hold_run_folder(tmp_path):
        pass


def test_a_child_forked_while_it_is_held_does_not_keep_it(tmp_path):
    started, done = FORK.Event(), FORK.Event()
    with hold_run_folder(tmp_path):
        child = FORK.Process(target=_wait, args=(started, done), daemon=True)  # a worker
        child.start()
        assert started.wait(60)  # past the fork handlers, as a worker that reads data
    try:
        assert child.is_alive()
        with hold_run_folder(tmp_path):  # the next run, while the child lives on
            pass
    finally:
        done.set()
        child.join(60)


def test_other_ranks_of_the_holding_run_take_nothing(tmp_path):
    with hold_run_folder(tmp_path), hold_run_folder(tmp_path, take=False):
        pass
