"""Choosing an op's implementation (the PyTorch reference or the Triton kernel), and the row layout
the row-wise Triton kernels take."""
from __future__ import annotations

import os

from torch import Tensor

IMPLS = ("auto", "naive", "triton")


def resolve_impl(op: str, impl: str, x: Tensor) -> str:
    """'auto' is the Triton kernel for CUDA tensors and the PyTorch reference otherwise.

    'triton' on CPU tensors needs Triton's interpreter (TRITON_INTERPRET=1, set before triton
    is imported); asking for it without one is an error, never a silent fallback.
    """
    if impl not in IMPLS:
        raise ValueError(f"{op}: unknown impl {impl!r}; available: {', '.join(IMPLS)}")
    if impl == "auto":
        return "triton" if x.is_cuda else "naive"
    if impl == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"{op}: impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for Triton's CPU interpreter)")
    return impl


def as_rows(t: Tensor) -> Tensor:
    """[..., D] -> [rows, D] with unit stride along D: a view where the layout allows (a split of a
    wider projection keeps its row stride), a contiguous copy otherwise."""
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()
