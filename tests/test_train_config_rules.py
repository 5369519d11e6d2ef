"""Every value rule of the training configuration, from a table written here (issue 27):
per key, a value the rule must refuse and the nearest value it must accept. The table is
the source of truth; a test checks that every row of `_RULES` is exercised by it, so a rule
added without a row here, or a row dropped from `_RULES`, fails."""

from __future__ import annotations

import fnmatch

import pytest

from pose3d import cli
from pose3d.train.config import _RULES, ConfigError, load_config

TINY = "launch/configs/tiny.yaml"
STAGE = "sv_pretrain"  # tiny.yaml's stage; optim.STAGE.* below are this stage's keys

# (key, a value that must be refused, the nearest value that must be accepted, the words of
# the refusal). Ranges as the keys' comments and uses say: counts and sizes >= 1, weights
# and tolerances >= 0, image sizes multiples of the ResNet stride 32.
POSITIVE, NON_NEGATIVE = "must be positive", "must be >= 0"
IN_MEMORY = "fit in this machine's memory"
TABLE: list[tuple[str, str, str, str]] = [
    ("data.image_size", "48", "64", "must be a positive multiple of 32"),
    ("data.image_size", "0", "32", "must be a positive multiple of 32"),
    ("data.batches_per_epoch", "0", "1", POSITIVE),
    ("data.batches_per_epoch", str(2 ** 63), str(2 ** 63 - 1), "2^63"),
    ("data.num_workers", "-1", "0", NON_NEGATIVE),
    ("data.shuffle_buffer", "-1", "0", NON_NEGATIVE),
    ("data.shuffle_buffer", "100000000000", "100", IN_MEMORY),  # issue 32: 1e11 x 48 KiB
    ("model.sv.deconv_channels", "0", "1", POSITIVE),
    ("model.mv.deconv_channels", "0", "1", POSITIVE),
    ("model.sv.num_deconv", "-1", "0", NON_NEGATIVE),
    ("model.mv.num_deconv", "-1", "0", NON_NEGATIVE),
    ("model.sv.depth_bins", "0", "1", POSITIVE),
    ("optim.weight_decay", "-1e-4", "0", NON_NEGATIVE),
    ("optim.grad_clip_norm", "-1", "0", NON_NEGATIVE),
    ("optim.lr_reference_batch", "0", "1", POSITIVE),
    ("optim.pgt.lr", "nan", "-1", "must be finite"),  # the P-GT stage's: unused
    ("optim.pgt.lr", "inf", "0", "must be finite"),
    ("optim.pgt.epochs", str(-2 ** 63 - 1), "0", "2^63"),  # unused: any int64
    (f"optim.{STAGE}.epochs", "0", "1", POSITIVE),
    (f"optim.{STAGE}.batch_size", "0", "1", POSITIVE),
    (f"optim.{STAGE}.batch_size", "100000000000", "64", IN_MEMORY),  # issue 32, item 8
    ("optim.pgt.batch_size", "100000000000", "64", IN_MEMORY),
    (f"optim.{STAGE}.lr", "-1e-3", "0", NON_NEGATIVE),
    ("loss.depth_range_mm", "0", "1", POSITIVE),
    ("loss.heatmap_sigma", "0", "0.1", POSITIVE),
    ("loss.lambda_mv", "-1", "0", NON_NEGATIVE),
    ("loss.lambda_pose", "nan", "0", NON_NEGATIVE),
    ("pgt.samples_per_shard", "0", "1", POSITIVE),
    ("pgt.reject_px", "-1", "0", NON_NEGATIVE),
    ("pgt.max_residual_px", "-1", "0", NON_NEGATIVE),
    ("pgt.sharpen", "0", "0.5", POSITIVE),
    ("run.ckpt_every_steps", "0", "1", POSITIVE),
    ("run.log_every_steps", "0", "1", POSITIVE),
    ("run.image_every_steps", "0", "1", POSITIVE),
    ("run.keep_checkpoints", "0", "1", POSITIVE),
    ("run.dist_timeout_s", "0", "1", POSITIVE),
    ("run.threads", "-1", "0", NON_NEGATIVE),  # 0: auto
    ("run.seed", str(2 ** 63), "-1", "2^63"),  # seeds reach torch.manual_seed (int64)
]
# The P-GT stage trains nothing: its lr and epochs stay unchecked also when it is the stage
# (where optim.STAGE.* would otherwise refuse them).
STAGE_OF = {"optim.pgt.lr": "pgt", "optim.pgt.epochs": "pgt", "optim.pgt.batch_size": "pgt"}


@pytest.mark.parametrize("key, bad, good, words", TABLE,
                         ids=[f"{k}={b}" for k, b, _, _ in TABLE])
def test_each_rule_refuses_its_bad_value_in_one_line_and_accepts_the_boundary(key, bad, good,
                                                                              words):
    stage = f"stage={STAGE_OF.get(key, STAGE)}"
    with pytest.raises(ConfigError) as exc:
        load_config(TINY, [stage, f"{key}={bad}"])
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"bad config: {key} ")
    assert words in message
    load_config(TINY, [stage, f"{key}={good}"])


def test_every_rule_has_a_row_in_the_table():
    keys = {k for k, *_ in TABLE}
    missing = [pattern for pattern, _ in _RULES
               if not any(fnmatch.fnmatchcase(k, pattern.replace("STAGE", STAGE)) for k in keys)]
    assert not missing, f"_RULES rows without a case in TABLE: {missing}"


def test_other_stages_keys_are_only_checked_finite():
    load_config(TINY, ["stage=finetune", f"optim.{STAGE}.epochs=0",
                       f"optim.{STAGE}.batch_size=0", f"optim.{STAGE}.lr=-1"])


@pytest.mark.parametrize("override", ["run.ckpt_every_steps=0",
                                      f"data.batches_per_epoch={2 ** 64 + 5}"])
def test_train_command_refuses_in_one_line(tmp_path, capsys, override):
    root = tmp_path / "run"
    code = cli.main(["train", "--config", TINY, f"run.root={root}", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"pose3d train: error: bad config: {override.split('=')[0]} ")
    assert not root.exists()
