"""A rerun of `pose3d demo` or `pose3d experiment` over an existing folder reuses its studio and
runs only when they were made with the settings asked for (issue 26): another λ2, seed or
number of steps is refused in one line naming the difference, before any work, and nothing
in the folder changes. The same settings (W&B aside) reuse everything."""

from __future__ import annotations

import os

import pytest
from test_demo import TINY

from pose3d import cli, demo


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """The demo shrunk as in test_demo, run once: out folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(demo.PRESETS, "small", TINY)
        out = tmp_path_factory.mktemp("rerun") / "demo"
        assert cli.main(["demo", "--out", str(out), "--wandb", "disabled",
                         "--workers", "1"]) == 0
        yield out


def _state(folder) -> dict[str, tuple[int, bytes | None]]:
    """Every file's mtime, and the bytes of the config records."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns,
                                         p.read_bytes() if p.suffix == ".yaml" else None)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys, command: str, *expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pose3d {command}: error: ") and "\n" not in err, err
    assert "not reused" in err and all(e in err for e in expected), err


@pytest.mark.slow
@pytest.mark.parametrize("change, expected", [
    (["--lambda-mv", "3e-4"], ["finetune_ours", "loss.lambda_mv=0.0003 asked, 0.0001 there"]),
    (["--first-seed", "1"], ["seed=1 asked, 0 there"]),  # the studio was rendered with seed 0
    (["--steps-scale", "2"], ["mv_pretrain", "data.batches_per_epoch=4 asked, 2 there"]),
])
def test_a_demo_rerun_with_other_settings_is_refused(tiny_demo, monkeypatch, capsys, change,
                                                     expected):
    monkeypatch.setitem(demo.PRESETS, "small", TINY)
    before = _state(tiny_demo)
    assert cli.main(["demo", "--out", str(tiny_demo), "--wandb", "disabled", "--workers", "1",
                     *change]) == 2
    _one_line(capsys, "demo", *expected)
    assert _state(tiny_demo) == before


@pytest.mark.slow
def test_a_demo_rerun_with_the_same_settings_reuses_every_run(tiny_demo, monkeypatch):
    monkeypatch.setitem(demo.PRESETS, "small", TINY)
    monkeypatch.setattr(demo, "synthesize", None)  # rendering again would fail
    ckpts = {p: p.stat().st_mtime_ns for p in (tiny_demo / "runs").glob("*/checkpoints/*.pt")}
    assert cli.main(["demo", "--out", str(tiny_demo), "--wandb", "offline",
                     "--workers", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts


@pytest.mark.slow
def test_an_experiment_rerun_with_other_settings_is_refused(tiny_demo, capsys):
    base = ["experiment", "--demo", str(tiny_demo), "--seeds", "1", "--arms", "Ours",
            "--device", "cpu"]
    assert cli.main([*base, "--steps", "2"]) == 0
    exp = tiny_demo / "experiment"
    before = _state(exp)
    capsys.readouterr()
    assert cli.main([*base, "--steps", "3"]) == 2
    _one_line(capsys, "experiment", "Ours/seed0", "data.batches_per_epoch=3 asked, 2 there")
    assert cli.main([*base, "--steps", "2", "--lambda-mv", "2e-4"]) == 2
    _one_line(capsys, "experiment", "loss.lambda_mv=0.0002 asked, 0.0001 there")
    # Base trained again after the run: the run no longer starts from it
    ckpt = tiny_demo / "runs" / "sv_pretrain" / "checkpoints" / "latest.pt"
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**12))
    try:
        assert cli.main([*base, "--steps", "2"]) == 2
        _one_line(capsys, "experiment", "model.sv.weights_path", "is newer than the run's")
    finally:
        os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _state(exp) == before
    assert cli.main([*base, "--steps", "2"]) == 0  # as asked: reused
