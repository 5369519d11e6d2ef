"""The benchmark commands run and print their tables (figures only: no timing is asserted)."""

import math

import pytest
import torch
import torchvision

from pose3d import cli
from pose3d.bench.flops import train_flops_per_image
from pose3d.train.config import load_config
from pose3d.train.registry import make_stage


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|") and "---" not in line]


def test_bench_ops_soft_argmax_quick(capsys):
    assert cli.main(["bench", "ops", "--only", "soft_argmax", "--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "eager" in out and "fused" in out
    assert len(_table_rows(out)) >= 3  # header + an eager row + a fused row


def test_bench_data_small(capsys):
    assert cli.main(["bench", "data", "--sizes", "64", "--tuples", "8", "--read-epochs", "1",
                     "--batch-size", "4", "--no-model", "--device", "cpu"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert len(rows) >= 2 and any(row.split("|")[1].strip() == "64" for row in rows[1:])


def test_bench_train_quick(capsys):
    assert cli.main(["bench", "train", "--quick", "--device", "cpu", "--tuples", "8",
                     "--num-workers", "0"]) == 0
    assert len(_table_rows(capsys.readouterr().out)) >= 2


def _macs_by_hooks(model: torch.nn.Module, run) -> int:
    """Multiply-adds of the convolutions, transposed convolutions and linear layers of one
    call, counted from their input and output shapes (not torch's FLOP counter)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = math.prod(getattr(module, "kernel_size", (1,)))
        if isinstance(module, torch.nn.ConvTranspose2d):  # every input pixel meets a kernel
            total += inputs[0].numel() * module.out_channels // module.groups * k
        elif isinstance(module, torch.nn.Conv2d):  # every output pixel is one kernel's sum
            total += output.numel() * module.in_channels // module.groups * k
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return total


def test_training_flops_of_one_convolution_by_hand():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 10, 10)
    # 2 x 8 x 10 x 10 outputs, each 3 x 3 x 3 multiply-adds; 2 FLOPs each, x3 for a step
    assert train_flops_per_image(lambda: conv(x), 2) == 3 * 2 * (8 * 10 * 10) * 27


def test_resnet50_training_flops_match_torchvisions_published_count():
    # torchvision documents ResNet-50 at 224 px as 4.089 "GFLOPS", counted as multiply-adds
    macs = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    assert train_flops_per_image(lambda: model(x), 1) == pytest.approx(3 * 2 * macs, rel=2e-3)


@pytest.mark.slow
def test_bench_train_anchor_row_beside_ours_with_independently_counted_flops(capsys):
    assert cli.main(["bench", "train", "--quick", "--anchor", "--device", "cpu", "--tuples", "8",
                     "--num-workers", "0", "--fused", "--decode-on-device"]) == 0
    lines = _table_rows(capsys.readouterr().out)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
            for line in lines[1:]]
    assert [r["model"] for r in rows] == ["single-view resnet18",
                                          "anchor: torchvision resnet50 classifier"]
    ours, anchor = rows
    assert anchor["input"] == "64 px" and anchor["images/step"] == "2"
    x = torch.randn(1, 3, 64, 64)
    resnet50 = torchvision.models.resnet50().eval()
    expected = 3 * 2 * _macs_by_hooks(resnet50, lambda: resnet50(x)) / 1e9
    assert float(anchor["GFLOP/image fwd+bwd"]) == pytest.approx(expected, rel=1e-3)

    cfg = load_config("launch/configs/tiny.yaml", [
        "model.sv.backbone=resnet18", "model.sv.deconv_channels=256", "model.sv.num_deconv=3",
        "model.sv.depth_bins=64", "data.image_size=64"])
    stage = make_stage("sv_pretrain")
    model = stage.build_model(cfg).eval()  # the bench's defaults over --quick's sizes
    images = torch.randn(1, 3, 64, 64)
    expected = 3 * 2 * _macs_by_hooks(model, lambda: model(images)) / 1e9
    assert float(ours["GFLOP/image fwd+bwd"]) == pytest.approx(expected, rel=1e-3)
    assert ours["images/step"] == "8" and float(ours["TFLOP/s model only"]) > 0
    assert ours["of anchor's TFLOP/s"].endswith("%")
    assert ours["levers"] == "fused Adam, decode on device"


def test_bench_profile_soft_argmax_quick(capsys):
    assert cli.main(["bench", "profile", "--quick", "--only", "soft_argmax", "--device", "cpu",
                     "--calls", "1"]) == 0
    out = capsys.readouterr().out
    assert "## soft_argmax_3d forward+backward, bfloat16, B=2, J=17, 16^3" in out
    assert "pose3d::soft_argmax_3d_backward" in out and "ms per call" in out


def test_bench_threads_table_has_every_row_and_ratios_to_the_quiet_all_cores_row(monkeypatch):
    from pose3d.bench import threads as bench_threads

    seen = []

    def fake_row(spec, env):
        seen.append((env.get("OMP_NUM_THREADS"), env.get("OMP_WAIT_POLICY")))
        return {"steps_per_s": 4.0 if len(seen) == 2 else 1.0, "threads": 1}

    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's setting: not what a row measures
    monkeypatch.setattr(bench_threads, "run_row", fake_row)
    rows = bench_threads.table_rows({}, cores=2)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (load, threads, env) for load in ("quiet", "beside 1 busy process")
        for threads, env in [("1", "OMP_NUM_THREADS=1"), ("2", "OMP_NUM_THREADS=2"),
                             ("2", "OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE"),
                             ("adaptive", "(none)")]]
    assert seen[3] == (None, None)  # the adaptive row: no OMP setting at all
    assert [r[4] for r in rows] == ["25%", "100%", "25%", "25%", "25%", "25%", "25%", "25%"]


def test_bench_threads_busy_process_has_its_own_session_and_dies_with_ctrl_c():
    import os

    from pose3d.bench import threads as bench_threads

    with pytest.raises(KeyboardInterrupt):
        with bench_threads.busy_process() as busy:
            assert os.getsid(busy.pid) == busy.pid != os.getsid(0)
            raise KeyboardInterrupt
    assert busy.poll() is not None


@pytest.mark.slow
def test_bench_threads_quick(capsys, monkeypatch):
    """A row's real process, quiet, the adaptive setting: every row's environment and the
    ratios are checked with fake rows above, the busy process by the test below (a real
    busy process here would hold one of the suite's two cores while the row runs, slowing
    the other worker's tests as much as this one). Without the all-cores row, no ratio."""
    from pose3d.bench import threads as bench_threads

    every = bench_threads.modes
    monkeypatch.setattr(bench_threads, "modes", lambda cores: every(cores)[-1:])
    monkeypatch.setattr(bench_threads, "LOADS", bench_threads.LOADS[:1])
    assert cli.main(["bench", "threads", "--quick"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert len(rows) == 2  # header + the quiet adaptive row
    assert not any("failed" in row for row in rows)
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert [c[:2] for c in cells] == [["quiet", "adaptive"]]
    assert all(float(c[3]) > 0 and c[4] == "-" for c in cells)
