import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import pose3d
from pose3d import cli
from pose3d.cliargs import split_checkpoint
from pose3d.env_report import collect


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert pose3d.__version__ in capsys.readouterr().out


def test_env_reports_the_extension_build():
    info = collect()
    assert info["extension"] == "built", info["extension"]
    assert isinstance(info["extension_cuda_kernels"], bool)
    assert info["extension_openmp"] is True


def test_env_command_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "pose3d", "env", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert '"extension": "built"' in out


def test_unknown_command_is_an_error():
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """name -> parser of each subcommand `parser` has (from its subparsers action)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subs[0].choices) if subs else {}


def _command_paths() -> list[list[str]]:
    """Every command path, nested ones too (`bench ops`, `convert h36m`), read from the
    parsers themselves: a command added to cli.COMMANDS is covered without a new line here."""
    paths = []
    for name in _subcommands(cli.build_parser()):
        paths.append([name])
        nested = _subcommands(_subcommands(cli.build_parser(name))[name])
        paths += [[name, inner] for inner in nested]
    return paths


def test_every_help_exits_0_and_shows_defaults(capsys):
    paths = _command_paths()
    assert ["experiment"] in paths and ["convert", "h36m"] in paths
    for path in [[], *paths]:
        with pytest.raises(SystemExit) as exc:
            cli.main([*path, "--help"])
        assert exc.value.code == 0, path
        assert "usage: pose3d" in capsys.readouterr().out
    # the defaults shown are the parser's own
    demo_parser = _subcommands(cli.build_parser("demo"))["demo"]
    steps_scale = next(a for a in demo_parser._actions if "--steps-scale" in a.option_strings)
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert f"(default: {steps_scale.default})" in " ".join(capsys.readouterr().out.split())


def test_top_level_help_imports_no_feature():
    """`pose3d --help` in a fresh interpreter: neither torch nor any subcommand's module."""
    code = ("import sys\nfrom pose3d import cli\ntry:\n    cli.main(['--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "features = {m for m, _ in cli.COMMANDS.values()}\n"
            "print('IMPORTED', sorted(m for m in sys.modules if m == 'torch' or m in features))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "IMPORTED []"


def test_old_spellings_still_work_with_one_warning_line(capsys):
    cases = [(["demo", "--seed", "3"], "first_seed", 3, "--first-seed"),
             (["predict", "x.png", "--checkpoint", "a.pt", "--out", "o", "--quiet"],
              "no_progress", True, "--no-progress"),
             (["convert", "h36m", "--root", "raw", "--out", "o"], "root", Path("raw"),
              "--source")]
    for argv, dest, value, new in cases:
        args = cli.build_parser(argv[0]).parse_args(argv)
        assert getattr(args, dest) == value
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"deprecated; use {new}" in err
    args = cli.build_parser("demo").parse_args(["demo"])  # no alias given: no warning
    assert args.first_seed == 0 and capsys.readouterr().err == ""


def test_checkpoint_takes_path_or_name_equals_path(tmp_path):
    odd = tmp_path / "lr=3e-4.pt"
    odd.write_bytes(b"")
    assert split_checkpoint("Base=runs/a.pt") == ("Base", "runs/a.pt")
    assert split_checkpoint("runs/b.pt") == ("b", "runs/b.pt")
    assert split_checkpoint(str(odd)) == ("lr=3e-4", str(odd))  # exists as written: a path
    args = cli.build_parser("predict").parse_args(
        ["predict", "x.png", "--checkpoint", "Base=runs/a.pt", "--out", "o"])
    assert args.checkpoint == "runs/a.pt"


@pytest.mark.parametrize("failure", ["disk", "checkpoint", "other", "unreadable"])
def test_a_full_disk_ends_a_command_in_one_line(monkeypatch, capsys, tmp_path, failure):
    """A command stopped by a full disk says so in one line and exits 1 (the demo's renderer
    and the experiment's checkpoints reach the top as OSError / CheckpointError); any other
    error keeps its traceback."""
    import errno

    from pose3d import experiment
    from pose3d.models.saved import CheckpointError, CheckpointWriteError

    raised = {"disk": OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.tar")),
              "checkpoint": CheckpointWriteError(f"cannot save a checkpoint in {tmp_path}: "
                                                 f"the write failed (0 MiB free there; the "
                                                 f"previous checkpoints are kept)"),
              "other": OSError(errno.EACCES, "Permission denied"),
              "unreadable": CheckpointError(f"cannot read checkpoint {tmp_path}/a.pt")}[failure]

    def stopped(args):
        raise raised

    monkeypatch.setattr(experiment, "main", stopped)
    if failure in ("other", "unreadable"):  # not a storage failure: its traceback stays
        with pytest.raises(type(raised)):
            cli.main(["experiment", "--demo", str(tmp_path)])
        return
    assert cli.main(["experiment", "--demo", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d experiment: error: ") and "\n" not in err, err
    assert "run the same command again: finished work is reused" in err
    assert str(tmp_path) in err
