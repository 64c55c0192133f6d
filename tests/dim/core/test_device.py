"""Device choice (CUDA, then MPS, then CPU, or as asked) and seeding, with the accelerators' availability faked."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from dim.core.device import (
    adam,
    autocast,
    bf16_is_fast,
    seed_everything,
    select_device,
    uses_bf16,
)


@pytest.fixture
def accelerators(monkeypatch):
    """Set which accelerators this machine seems to have: ``accelerators(cuda=..., mps=...)``."""

    def fake(cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return fake


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(accelerators, cuda, mps, expected):
    accelerators(cuda=cuda, mps=mps)
    assert select_device("auto") == torch.device(expected)
    assert select_device() == torch.device(expected)  # "auto" is the default


def test_a_named_device_is_taken_as_given(accelerators):
    accelerators(cuda=True, mps=False)
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("cuda:1") == torch.device("cuda", 1)


def test_an_unavailable_accelerator_is_an_error_that_says_what_to_do(accelerators):
    accelerators(cuda=False, mps=False)
    with pytest.raises(ValueError) as error:
        select_device("cuda")
    assert str(error.value) == "device 'cuda' was requested but CUDA is not available; use --device auto or cpu"
    with pytest.raises(ValueError, match=r"device 'cuda:1' was requested but CUDA is not available"):
        select_device("cuda:1")
    with pytest.raises(ValueError) as error:
        select_device("mps")
    assert str(error.value) == "device 'mps' was requested but MPS is not available; use --device auto or cpu"


def draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(3)
    first = draws()
    seed_everything(3)
    assert draws() == first  # every generator replays
    seed_everything(4)
    other = draws()
    assert all(a != b for a, b in zip(first[:2], other[:2])) and first[2] != other[2]


def test_autocast_follows_the_precision(monkeypatch):
    cpu = torch.device("cpu")
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(cpu, "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast(cpu, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    for fast in (True, False):  # "auto" is bf16 where the CPU has bf16 units, fp32 where it has not
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda fast=fast: fast)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert bf16_is_fast(cpu) is fast
        with autocast(cpu, "auto"):
            assert (a @ b).dtype == (torch.bfloat16 if fast else torch.float32)
        assert uses_bf16(cpu, "auto") is fast
    assert autocast(torch.device("cuda"), "auto").fast_dtype == torch.bfloat16  # CUDA: the context's dtype
    with pytest.raises(ValueError, match="unknown precision 'fp8'; choose one of auto, fp32, bf16"):
        autocast(cpu, "fp8")


def test_adam_uses_the_fused_kernel_on_the_cpu():
    layer = torch.nn.Linear(3, 2)
    assert adam(layer.parameters(), torch.device("cpu"), lr=0.1).defaults["fused"] is True
    assert adam(layer.parameters(), torch.device("mps"), lr=0.1).defaults["fused"] is None
