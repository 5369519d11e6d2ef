"""pose3d.device: which device a command runs on, and when it computes in bf16."""

import pytest
import torch

import pose3d.device as device_module
from pose3d.device import bf16_autocast, cpu_has_native_bf16, resolve_device

CPU = torch.device("cpu")


def _matmul_dtype() -> torch.dtype:
    a = torch.randn(4, 4)
    return (a @ a).dtype


def test_resolve_device_names_cpu_and_refuses_nonsense():
    assert resolve_device("cpu") == CPU
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")


def test_cpu_bf16_support_is_a_plain_answer():
    assert isinstance(cpu_has_native_bf16(), bool)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_autocast_only_when_asked_and_the_cpu_has_bf16(monkeypatch, native):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    with bf16_autocast(CPU, on_gpu=True, on_cpu=False):
        assert _matmul_dtype() == torch.float32
    with bf16_autocast(CPU, on_gpu=True, on_cpu=True):
        assert _matmul_dtype() == (torch.bfloat16 if native else torch.float32)
    assert _matmul_dtype() == torch.float32  # nothing left behind


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_gpu_autocast_follows_on_gpu_alone(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    cuda = torch.device("cuda")
    on, off = bf16_autocast(cuda, on_gpu=True), bf16_autocast(cuda, on_gpu=False, on_cpu=True)
    assert isinstance(on, torch.autocast) and on.fast_dtype == torch.bfloat16
    assert not isinstance(off, torch.autocast)
