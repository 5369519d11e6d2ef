import pytest
import torch
from omegaconf import OmegaConf

from pose3d.train.config import ConfigError, learning_rate, load_config, stage_optim

TINY = "launch/configs/tiny.yaml"


def test_yaml_and_overrides_merge_over_defaults():
    cfg = load_config(TINY, ["stage=finetune", "optim.finetune.lr=3e-4", "run.root=/tmp/r"])
    assert cfg.model.sv.backbone == "resnet10"  # from the YAML
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
    # values that used to pass validation and fail later (issue 16, item 8)
    ("loss.lambda_mv=nan", ["loss.lambda_mv must be >= 0", "nan"]),
    ("loss.lambda_pose=inf", ["loss.lambda_pose", "inf"]),
    ("loss.lambda_3d=-1", ["loss.lambda_3d must be >= 0"]),
    ("optim.sv_pretrain.lr=nan", ["optim.sv_pretrain.lr must be"]),
    ("optim.sv_pretrain.lr=-1e-3", ["optim.sv_pretrain.lr must be"]),
    ("optim.sv_pretrain.epochs=0", ["optim.sv_pretrain.epochs must be positive"]),
    ("optim.sv_pretrain.batch_size=0", ["optim.sv_pretrain.batch_size must be positive"]),
    ("loss.depth_range_mm=0", ["loss.depth_range_mm must be positive"]),
    ("model.sv.depth_bins=0", ["model.sv.depth_bins must be positive"]),
    ("model.sv.backbone=resnet99", ["model.sv.backbone must be one of", "resnet18",
                                    "resnet99"]),
    ("model.mv.num_deconv=-1", ["model.mv.num_deconv must be >= 0"]),
    ("data.shuffle_buffer=-5", ["data.shuffle_buffer must be >= 0"]),
    ("optim.grad_clip_norm=nan", ["optim.grad_clip_norm"]),
    ("run.dist_timeout_s=0", ["run.dist_timeout_s must be positive"]),
    ("data.image_size=100", ["data.image_size must be a positive multiple of 32"]),
    ("data.image_size=0", ["data.image_size must be a positive multiple of 32"]),
    ("run.device=tpu", ["run.device must be"]),
    ("pgt.reject_px=-1", ["pgt.reject_px must be >= 0"]),
    ("pgt.reject_px=nan", ["pgt.reject_px must be >= 0"]),
    ("pgt.sharpen=0", ["pgt.sharpen must be positive"]),
    ("pgt.flip_test=sometimes", ["pgt.flip_test"]),
    ("loss.heatmap_sigma=0", ["loss.heatmap_sigma must be positive"]),
    ("loss.lambda_heatmap=-1", ["loss.lambda_heatmap must be >= 0"]),
    ("optim.lr_scaling=cubic", ["optim.lr_scaling must be one of", "linear"]),
    ("optim.lr_reference_batch=0", ["optim.lr_reference_batch must be positive"]),
    ("run.compile_mode=fastest", ["run.compile_mode must be one of", "reduce-overhead"]),
    ("run.ddp=never", ["run.ddp must be one of", "always"]),
])
def test_bad_overrides_give_one_line_naming_the_key(override, words):
    with pytest.raises(ConfigError) as exc:
        load_config(TINY, [override])
    message = str(exc.value)
    assert "\n" not in message
    for w in words:
        assert w in message


def test_every_message_says_bad_config():
    for override in ("loss.lambda_mv=nan", "stage=x", "model.sv.backbone=vgg"):
        with pytest.raises(ConfigError, match=r"^bad config: "):
            load_config(TINY, [override])


def test_other_stages_lr_is_not_this_runs_business():
    # the P-GT stage does not train: its lr 0 (the default) is fine, and a finetune run
    # does not care about the P-GT stage's epochs
    assert load_config(TINY, ["stage=pgt"]).optim.pgt.lr == 0.0
    load_config(TINY, ["stage=finetune", "optim.pgt.epochs=0", "optim.sv_pretrain.lr=0"])
    with pytest.raises(ConfigError, match="optim.sv_pretrain.lr must be finite"):
        load_config(TINY, ["stage=finetune", "optim.sv_pretrain.lr=nan"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_without_a_gpu(device):
    with pytest.raises(ConfigError, match="no CUDA device"):
        load_config(TINY, [f"run.device={device}"])


@pytest.mark.parametrize("text", ["model: {sv: [1, 2\n", "stage: sv_pretrain\n  bad: : x\n",
                                  "- a list\n- not a mapping\n"])
def test_malformed_yaml_is_one_line(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


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


def test_train_command_stops_in_one_line_before_any_work(tmp_path, capsys):
    from pose3d import cli

    root = tmp_path / "run"
    code = cli.main(["train", "--config", TINY, f"run.root={root}", "optim.sv_pretrain.epochs=0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("pose3d train: error: bad config: optim.sv_pretrain.epochs")
    assert not root.exists()


def test_learning_rate_scales_with_the_batch_over_all_ranks():
    # stage lr 0.2 holds at 8 tuples a step; 32 tuples a rank on 2 ranks is 8x the reference
    base = ["stage=finetune", "optim.finetune.lr=0.2", "optim.finetune.batch_size=32",
            "optim.lr_reference_batch=8"]
    linear = load_config(TINY, [*base, "optim.lr_scaling=linear"])
    assert learning_rate(linear, 0, 10, world_size=2) == pytest.approx(0.2 * 8)
    assert learning_rate(linear, 0, 10) == pytest.approx(0.2 * 4)
    root = load_config(TINY, [*base, "optim.lr_scaling=sqrt"])
    assert learning_rate(root, 0, 10, world_size=2) == pytest.approx(0.2 * 8 ** 0.5)
    plain = load_config(TINY, base)  # lr_scaling=none, the default: the lr as given
    assert learning_rate(plain, 0, 10, world_size=2) == pytest.approx(0.2)
    cosine = load_config(TINY, [*base, "optim.lr_scaling=linear", "optim.lr_schedule=cosine"])
    assert learning_rate(cosine, 5, 10) == pytest.approx(0.2 * 4 * 0.5)  # half-way down


def test_decoding_on_the_device_refuses_augmentation():
    assert load_config(TINY, ["data.decode_on_device=true"]).data.decode_on_device
    with pytest.raises(ConfigError, match="data.decode_on_device needs data.augment=false"):
        load_config(TINY, ["data.decode_on_device=true", "data.augment=true"])
