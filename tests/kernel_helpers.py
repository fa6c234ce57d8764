"""What the Triton kernel tests share: importing a kernel module on the right backend, the
relative error they compare with, and the gpu mark."""
from __future__ import annotations

import importlib

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
"""With @pytest.mark.gpu: a test that needs a CUDA GPU (CPU runs skip it and say so)."""


def import_kernels(module: str, kernel: str):
    """The kernel module, on CUDA as is, else on Triton's CPU interpreter (chosen by conftest.py
    before triton is first imported); skips the calling test module where neither can run."""
    pytest.importorskip("triton")
    mod = importlib.import_module(module)
    if not torch.cuda.is_available() and type(getattr(mod, kernel)).__name__ != "InterpretedFunction":
        pytest.skip("no CUDA, and triton was imported before TRITON_INTERPRET=1 was set: run with TRITON_INTERPRET=1",
                    allow_module_level=True)
    return mod


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in fp64."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
