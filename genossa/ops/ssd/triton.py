"""Triton implementation of the Mamba2 SSD scan (`ssd(..., impl="triton")`): autograd wrapper.

The kernels (genossa.kernels.ssd_fwd / ssd_bwd) equal `ssd_chunked` in naive.py. Saved for
backward: the inputs, the per-chunk states before each chunk ([B, T/chunk, H, P, N] fp32) and,
with a gate z, the pre-gate output; memory is linear in T and no per-position state exists.
Importance (ScanImportance of ||h_t|| and ||h_t - h_{t-1}||, fp32, no gradient) comes from the
forward scan kernel's epilogue.
"""
from __future__ import annotations

import torch
from torch import Tensor

from genossa.kernels.ssd_bwd import ssd_bwd
from genossa.kernels.ssd_fwd import ssd_fwd
from genossa.ops.ssd.naive import ScanImportance


KERNEL_CONFIG = {
    "fwd": {"block_l": 64, "num_warps": 4, "use_gram": True, "bf16_scan": True},
    "bwd": {"block_l": 32, "num_warps": 4, "use_gram": True, "group_block_l": 64, "group_warps": 8},
}
"""Launch parameters of the forward and backward chunk kernels: block_l (positions per tile, and
per program of the forward scan), num_warps, use_gram (C B^T once per chunk and group rather than
per head); bf16_scan (bf16 inputs: the forward scan reads bf16 copies of the chunk states and Gram
matrices, see ssd_fwd's scan_dtype); group_block_l / group_warps for the backward's per-group dB /
dC kernels.
benchmarks/ssd_bench.py sweeps them (`--bwd-sweep` for the backward); these were fastest (bf16,
16 heads x 64, d_state 128, chunk 256, n = 128k; the per-head backward on an H100, the forward
and the group kernels on an H200; benchmarks/RESULTS.md). fp32 always takes 32 positions."""


def _contig(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


class SSDFunction(torch.autograd.Function):
    """Outputs (y [B,T,H,P], final_state [B,H,P,N] fp32, norm [B,T,H], change [B,T,H]);
    norm/change are empty [B,0,H] tensors unless importance is asked for, and never get gradients."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, initial_state, chunk_size, return_importance):
        x, dt, A, B, C, D, z, initial_state = map(_contig, (x, dt, A, B, C, D, z, initial_state))
        cfg = dict(KERNEL_CONFIG["fwd"])
        bf16_scan = cfg.pop("bf16_scan", False) and x.dtype == torch.bfloat16
        y, y_pre, starts, final, norm, change, decay = ssd_fwd(
            x, dt, A, B, C, D, z, chunk_size, initial_state, return_importance,
            scan_dtype=torch.bfloat16 if bf16_scan else None, **cfg,
        )
        if norm is None:
            norm = change = x.new_empty(x.shape[0], 0, x.shape[2], dtype=torch.float32)
        ctx.mark_non_differentiable(norm, change)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, dt, A, B, C, D, z, y_pre, starts, decay)
        ctx.chunk_size = chunk_size
        ctx.has_initial = initial_state is not None
        ctx.initial_dtype = initial_state.dtype if initial_state is not None else None
        return y, final, norm, change

    @staticmethod
    def backward(ctx, dy, dfinal, _dnorm, _dchange):
        x, dt, A, B, C, D, z, y_pre, starts, decay = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(x)
        dx, ddt, dA, dB, dC, dD, dz, dinit = ssd_bwd(
            dy.contiguous(), None if dfinal is None else dfinal.contiguous(),
            x, dt, A, B, C, D, z, y_pre, starts, decay, ctx.chunk_size, ctx.has_initial,
            **KERNEL_CONFIG["bwd"],
        )
        return (
            dx, ddt.to(dt.dtype), dA.to(A.dtype), dB, dC,
            None if dD is None else dD.to(D.dtype), dz,
            None if dinit is None else dinit.to(ctx.initial_dtype), None, None,
        )


def ssd_triton(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    *,
    chunk_size: int,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
    return_importance: bool = False,
):
    """Mamba2 SSD scan on Triton kernels; same contract as `genossa.ops.ssd.ssd` (shapes there).

    x [B, T, H, P], dt [B, T, H] (positive), A [H] (negative), B/C [B, T, G, N], D [H], z like x,
    initial_state [B, H, P, N]. Returns y (x.dtype), or a tuple (y, final_state?, importance?)
    with final_state fp32 [B, H, P, N] (differentiable) and importance a ScanImportance of fp32
    [B, T, H] tensors (no gradient). Needs a device Triton can launch on (a CUDA GPU, or the CPU
    with TRITON_INTERPRET=1).
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"ssd_triton: x must be fp16, bf16 or fp32, got {x.dtype}")
    # the kernels feed B and C to tensor-core dots beside x: one dtype (autograd casts back)
    B, C = B.to(x.dtype), C.to(x.dtype)
    bsz, T, H, P = x.shape
    if T == 0:
        final = (
            initial_state.float()
            if initial_state is not None
            else x.new_zeros(bsz, H, P, B.shape[-1], dtype=torch.float32)
        )
        empty = x.new_zeros(bsz, 0, H, dtype=torch.float32)
        y, norm, change = x.new_zeros(x.shape), empty, empty
    else:
        y, final, norm, change = SSDFunction.apply(
            x, dt, A, B, C, D, z, initial_state, chunk_size, return_importance
        )
    if not (return_final_state or return_importance):
        return y
    out = (y,)
    if return_final_state:
        out += (final,)
    if return_importance:
        out += (ScanImportance(norm, change),)
    return out


__all__ = ["KERNEL_CONFIG", "SSDFunction", "ssd_triton"]
