"""Triton kernels of the hybrid block's elementwise glue, each one pass forward and one backward:

* SwiGLU activation: y = silu(gate) * up, gate and up the two halves of one projection
  gu [rows, 2H] (read in place);
      dgate = dy * up * silu'(gate),  dup = dy * silu(gate), written into one dgu [rows, 2H].
* Fusion gate with the residual: out = x + g * s + (1 - g) * a, g = sigmoid(p);
      dx = dout,  ds = dout * g,  da = dout * (1 - g),  dp = dout * (s - a) * g * (1 - g).

The references are the PyTorch expressions in genossa/ops/fused.py. As PyTorch ops they were
~5 kernels forward and ~8 backward, and most of the `aten::mul` time left in a small-preset
training step once the norms were fused (benchmarks/RESULTS.md, session 4). Arithmetic in
fp32, results in the inputs' dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_R, BLOCK_C = 16, 128
BLOCK_FLAT = 1024


@triton.jit
def _swiglu_fwd_kernel(gu_ptr, y_ptr, R, Hd, stride_gu, stride_y, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows < R)[:, None] & (cols < Hd)[None, :]
    base = gu_ptr + rows.to(tl.int64)[:, None] * stride_gu + cols[None, :]
    g = tl.load(base, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(base + Hd, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(y_ptr + rows.to(tl.int64)[:, None] * stride_y + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(gu_ptr, dy_ptr, dgu_ptr, R, Hd, stride_gu, stride_dy, stride_dgu,
                       BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows < R)[:, None] & (cols < Hd)[None, :]
    r64 = rows.to(tl.int64)[:, None]
    base = gu_ptr + r64 * stride_gu + cols[None, :]
    g = tl.load(base, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(base + Hd, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + r64 * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    dg = dy * u * sig * (1.0 + g * (1.0 - sig))
    du = dy * g * sig
    out = dgu_ptr + r64 * stride_dgu + cols[None, :]
    tl.store(out, dg.to(dgu_ptr.dtype.element_ty), mask=mask)
    tl.store(out + Hd, du.to(dgu_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _load_fp32(ptr, offs, mask):
    return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _gate_fwd_kernel(x_ptr, p_ptr, s_ptr, a_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.sigmoid(_load_fp32(p_ptr, offs, mask))
    out = _load_fp32(x_ptr, offs, mask) + g * _load_fp32(s_ptr, offs, mask) + (1.0 - g) * _load_fp32(a_ptr, offs, mask)
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gate_bwd_kernel(dout_ptr, p_ptr, s_ptr, a_ptr, dp_ptr, ds_ptr, da_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    d = _load_fp32(dout_ptr, offs, mask)
    g = tl.sigmoid(_load_fp32(p_ptr, offs, mask))
    s = _load_fp32(s_ptr, offs, mask)
    a = _load_fp32(a_ptr, offs, mask)
    tl.store(dp_ptr + offs, (d * (s - a) * g * (1.0 - g)).to(dp_ptr.dtype.element_ty), mask=mask)
    tl.store(ds_ptr + offs, (d * g).to(ds_ptr.dtype.element_ty), mask=mask)
    tl.store(da_ptr + offs, (d * (1.0 - g)).to(da_ptr.dtype.element_ty), mask=mask)


def swiglu_fwd(gu: torch.Tensor) -> torch.Tensor:
    """gu [R, 2H] (unit stride along the last axis) -> y [R, H] in gu's dtype."""
    R, H2 = gu.shape
    Hd = H2 // 2
    y = torch.empty((R, Hd), device=gu.device, dtype=gu.dtype)
    if R and Hd:
        _swiglu_fwd_kernel[(triton.cdiv(R, BLOCK_R), triton.cdiv(Hd, BLOCK_C))](
            gu, y, R, Hd, gu.stride(0), y.stride(0), BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return y


def swiglu_bwd(gu: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """d(gu) [R, 2H] from dy [R, H]."""
    R, H2 = gu.shape
    Hd = H2 // 2
    dgu = torch.empty((R, H2), device=gu.device, dtype=gu.dtype)
    if R and Hd:
        _swiglu_bwd_kernel[(triton.cdiv(R, BLOCK_R), triton.cdiv(Hd, BLOCK_C))](
            gu, dy, dgu, R, Hd, gu.stride(0), dy.stride(0), dgu.stride(0), BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return dgu


def gate_residual_fwd(x, p, s, a):
    """x + sigmoid(p) * s + (1 - sigmoid(p)) * a; all contiguous, one shape; x's dtype."""
    out = torch.empty_like(x)
    n = x.numel()
    if n:
        _gate_fwd_kernel[(triton.cdiv(n, BLOCK_FLAT),)](x, p, s, a, out, n, BLOCK=BLOCK_FLAT)
    return out


def gate_residual_bwd(dout, p, s, a):
    """(dp, ds, da) in the dtypes of p, s, a (dx is dout itself)."""
    dp, ds, da = torch.empty_like(p), torch.empty_like(s), torch.empty_like(a)
    n = dout.numel()
    if n:
        _gate_bwd_kernel[(triton.cdiv(n, BLOCK_FLAT),)](dout, p, s, a, dp, ds, da, n, BLOCK=BLOCK_FLAT)
    return dp, ds, da
