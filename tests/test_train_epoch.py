"""data.batches_per_epoch: null makes an epoch one pass over the stage's tuples per rank
(fine-tuning: GT and P-GT together), counted from the shard folders."""

from __future__ import annotations

import math

import pytest
import torch
from train_data import write_pgt_folder, write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.data.loader import iterate_samples
from pose3d.train import checkpoint
from pose3d.train.config import ConfigError, load_config
from pose3d.train.distributed import DistInfo
from pose3d.train.registry import make_stage

SIZE = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("epoch") / "data"
    write_tiny_dataset(out, frames=7, image_size=SIZE)
    return out


def _tuples(folder, role: str | None) -> int:
    """Tuples of `role` (None: all) counted by reading them."""
    return sum(role in (None, s.meta["role"]) for s in iterate_samples(str(folder)))


def _cfg(dataset, stage: str, batch: int, *extra):
    return load_config(TINY, [f"stage={stage}", f"data.root={dataset}",
                              f"data.image_size={SIZE}", "data.batches_per_epoch=null",
                              f"optim.{stage}.batch_size={batch}", *extra])


@pytest.mark.parametrize("world, batch", [(1, 2), (2, 2), (3, 4)])
def test_an_epoch_is_one_pass_over_the_stages_tuples_per_rank(dataset, tmp_path, world,
                                                              batch):
    pgt_folder = write_pgt_folder(dataset, tmp_path / "pgt")
    labeled = _tuples(dataset, "labeled")
    info = DistInfo(0, world, 0, torch.device("cpu"))
    for stage in ("mv_pretrain", "sv_pretrain"):
        got = make_stage(stage).batches_per_epoch(_cfg(dataset, stage, batch), info)
        assert got == math.ceil(math.ceil(labeled / world) / batch), stage
    # finetune: the labeled GT and every tuple of the P-GT folder
    cfg = _cfg(dataset, "finetune", batch, f"data.pgt_root={pgt_folder}")
    got = make_stage("finetune").batches_per_epoch(cfg, info)
    assert got == math.ceil(math.ceil((labeled + _tuples(pgt_folder, None)) / world) / batch)


def test_a_given_batches_per_epoch_wins(dataset):
    cfg = load_config(TINY, [f"data.root={dataset}", "data.batches_per_epoch=5"])
    assert make_stage("sv_pretrain").batches_per_epoch(
        cfg, DistInfo(0, 2, 0, torch.device("cpu"))) == 5


def test_a_stage_without_shards_needs_batches_per_epoch(dataset):
    from toy_stage import ToyStage

    cfg = load_config(TINY, [f"data.root={dataset}", "data.batches_per_epoch=null"])
    with pytest.raises(ConfigError, match="data.batches_per_epoch must be set"):
        ToyStage().batches_per_epoch(cfg, DistInfo(0, 1, 0, torch.device("cpu")))


@pytest.mark.slow
def test_a_run_without_batches_per_epoch_trains_one_pass_per_epoch(dataset, tmp_path):
    labeled = _tuples(dataset, "labeled")
    assert cli.main(["train", "--config", TINY, f"data.root={dataset}",
                     f"data.image_size={SIZE}", f"run.root={tmp_path}", "stage=sv_pretrain",
                     "data.batches_per_epoch=null", "optim.sv_pretrain.epochs=2",
                     "optim.sv_pretrain.batch_size=4"]) == 0
    last = checkpoint.load(tmp_path / "sv_pretrain" / "checkpoints" / "latest.pt")
    assert last["step"] == 2 * math.ceil(labeled / 4) and last["epoch"] == 2
