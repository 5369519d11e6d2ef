import subprocess
import sys

import pytest

import pose3d
from pose3d import cli
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
