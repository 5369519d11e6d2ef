"""No stage reads the eval role, by any configuration, and a fine-tuning reads P-GT only from
a P-GT folder (issue 32, item 1): every stage goes through pose3d.train.sources, and a
configuration that would read the eval tuples is refused in one line before any work."""

from __future__ import annotations

import pytest
from train_data import save_untrained_model, write_pgt_folder, write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.train.config import load_config
from pose3d.train.registry import make_stage

SIZE = 32


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    data = root / "data"
    write_tiny_dataset(data, frames=2, image_size=SIZE)
    save_untrained_model(root / "mv.pt")
    return {"data": data, "mv": root / "mv.pt", "pgt": write_pgt_folder(data, root / "pgt"),
            "forged": write_pgt_folder(data, root / "forged", ("unlabeled", "eval"))}


def _args(inputs, run_root, stage, *extra):
    return ["--config", TINY, f"stage={stage}", f"data.root={inputs['data']}",
            f"data.image_size={SIZE}", f"run.root={run_root}", "data.batches_per_epoch=1",
            f"optim.{stage}.epochs=1", f"optim.{stage}.batch_size=1",
            "model.finetune_init=''", f"pgt.checkpoint={inputs['mv']}",
            f"data.pgt_root={inputs['pgt']}", *extra]


# (stage, overrides naming a folder of `inputs` as {key}, the words of the refusal)
CASES = [
    ("mv_pretrain", ["data.labeled_role=eval"], "would read the eval role 'eval'"),
    ("sv_pretrain", ["data.labeled_role=eval"], "would read the eval role 'eval'"),
    ("sv_pretrain", ["data.eval_role=labeled"], "would read the eval role 'labeled'"),
    ("pgt", ["data.unlabeled_role=eval"], "would read the eval role 'eval'"),
    ("finetune", ["data.labeled_role=eval", "data.use_pgt=false"], "eval role 'eval'"),
    ("finetune", ["data.unlabeled_role=eval"], "would read the eval role 'eval'"),
    ("finetune", ["data.pgt_root={data}"], "is not a P-GT folder"),  # the command
    ("finetune", ["data.pgt_root={forged}"], "holds the roles ['eval', 'unlabeled']"),
]


@pytest.mark.parametrize("stage, extra, words", CASES,
                         ids=[f"{s}-{'-'.join(e)}" for s, e, _ in CASES])
def test_no_stage_reads_the_eval_role(inputs, tmp_path, capsys, stage, extra, words):
    extra = [e.format(**inputs) for e in extra]
    code = cli.main(["train", *_args(inputs, tmp_path / "run", stage, *extra)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("pose3d train: error: bad config: ") and "\n" not in err, err
    assert words in err, err
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("stage", ["mv_pretrain", "pgt", "sv_pretrain", "finetune"])
def test_every_stage_reads_its_own_role_through_the_rule(inputs, tmp_path, stage):
    cfg = load_config(None, _args(inputs, tmp_path / "run", stage)[2:])
    make_stage(stage).check_inputs(cfg)  # the default roles and a P-GT folder: allowed
