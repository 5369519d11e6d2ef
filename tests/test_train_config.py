import pytest
from omegaconf import OmegaConf

from pose3d.train.config import ConfigError, learning_rate, load_config, stage_optim

TINY = "launch/configs/tiny.yaml"


def test_yaml_and_overrides_merge_over_defaults():
    cfg = load_config(TINY, ["stage=finetune", "optim.finetune.lr=3e-4", "run.root=/tmp/r"])
    assert cfg.model.sv.backbone == "resnet18"  # from the YAML
    assert stage_optim(cfg).lr == pytest.approx(3e-4)  # from the override
    assert cfg.run.out_dir == "/tmp/r/finetune"  # interpolated from run.root and stage
    assert cfg.data.pgt_root == "/tmp/r/pgt_shards"


@pytest.mark.parametrize("override, words", [
    ("run.bogus=1", ["unknown config key", "run.bogus"]),
    ("optim.lr=1", ["unknown config key", "optim.lr"]),
    ("data.image_size=big", ["data.image_size"]),
    ("stage=train_everything", ["stage must be one of"]),
    ("run.wandb=sometimes", ["run.wandb"]),
    ("optim.lr_schedule=linear", ["optim.lr_schedule must be one of"]),
    ("data.batches_per_epoch=0", ["data.batches_per_epoch must be positive"]),
    ("no_equals_sign", ["key=value"]),
])
def test_bad_overrides_give_one_line_naming_the_key(override, words):
    with pytest.raises(ConfigError) as exc:
        load_config(TINY, [override])
    message = str(exc.value)
    assert "\n" not in message
    for w in words:
        assert w in message


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  sv:\n    backbone: resnet18\n    n_layers: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model.sv.n_layers'"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_read_only():
    cfg = load_config(TINY)
    with pytest.raises(Exception):  # noqa: B017 - omegaconf's ReadonlyConfigError
        cfg.run.seed = 3
    assert OmegaConf.is_readonly(cfg)


def test_learning_rate_schedules_follow_the_step():
    constant = load_config(TINY, ["stage=finetune", "optim.finetune.lr=0.2"])
    assert [learning_rate(constant, s, 10) for s in (0, 5, 10)] == [0.2, 0.2, 0.2]
    cosine = load_config(TINY, ["stage=finetune", "optim.finetune.lr=0.2",
                                "optim.lr_schedule=cosine"])
    lrs = [learning_rate(cosine, s, 10) for s in range(11)]
    assert lrs[0] == pytest.approx(0.2) and lrs[5] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
