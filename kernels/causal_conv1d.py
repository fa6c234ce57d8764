"""Triton kernels of the mixer's causal depthwise convolution with SiLU:

    xp = [past; x]  (past: the last K - 1 inputs of the previous piece, zeros at the start)
    pre[t, c] = bias[c] + sum_k w[c, k] * xp[t + k, c],   y[t, c] = silu(pre[t, c])

for x [B, T, C] (any row stride, unit stride along C), w [C, K], bias [C], past [B, K - 1, C].
The reference is the PyTorch expression in genossa/modules/mamba2.py (`conv1d_silu_reference`):
torch.cat + F.conv1d + F.silu, whose depthwise kernel, the concatenation and the SiLU were three
passes (and their backward another four) over [B, T, C] in a training step.

Backward, with dpre = dy * silu'(pre) recomputed from x (no activation is saved but x), in two
passes over [B, T, C] tiles of BLOCK_T positions x BLOCK_C channels:
    1. dpre (stored in x's dtype), and each program's partial
       dw[c, k] = sum_t dpre[t, c] * xp[t + k, c] and dbias[c] = sum_t dpre[t, c] (the launcher sums them);
    2. dxp[r, c] = sum_k w[c, k] * dpre[r - k, c] (0 <= r - k < T): dx = dxp[K-1:], dpast = dxp[:K-1].
(One pass that recomputed dpre at every tap read x K * K times: 3.2 ms per call at [131k, 896] on
an H200, 11% of a small-preset training step.)
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _load_xp(x_base, past_base, r, stride_xt, stride_pt, cols, row_ok, col_ok, K: tl.constexpr,
             HAS_PAST: tl.constexpr):
    """[BLOCK_T, BLOCK_C] fp32 rows r (padded coordinates) of xp = [past; x]; 0 outside [0, T + K - 1)."""
    in_x = r >= K - 1
    in_past = r < K - 1
    xr = tl.where(in_x, r - (K - 1), 0).to(tl.int64)
    v = tl.load(x_base + xr[:, None] * stride_xt + cols[None, :], mask=(row_ok & in_x)[:, None] & col_ok[None, :],
                other=0.0).to(tl.float32)
    if HAS_PAST:
        pr = tl.where(in_x, 0, r).to(tl.int64)
        p = tl.load(past_base + pr[:, None] * stride_pt + cols[None, :],
                    mask=(row_ok & (r >= 0) & in_past)[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
        v = v + p
    return v


@triton.jit
def _pre(x_base, past_base, t, T, stride_xt, stride_pt, w_ptr, bias, cols, col_ok, K: tl.constexpr,
         HAS_PAST: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """[BLOCK_T, BLOCK_C] fp32 pre-activation at output positions t (rows outside [0, T) are garbage
    that callers mask)."""
    ok = (t >= 0) & (t < T)
    acc = tl.zeros([BLOCK_T, BLOCK_C], tl.float32) + bias[None, :]
    for k in tl.static_range(K):
        wk = tl.load(w_ptr + cols * K + k, mask=col_ok, other=0.0).to(tl.float32)
        acc += wk[None, :] * _load_xp(x_base, past_base, t + k, stride_xt, stride_pt, cols, ok, col_ok, K, HAS_PAST)
    return acc


@triton.jit
def _conv_fwd_kernel(x_ptr, past_ptr, w_ptr, b_ptr, y_ptr, T, C,
                     stride_xb, stride_xt, stride_pb, stride_pt, stride_yb, stride_yt,
                     K: tl.constexpr, HAS_PAST: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    b = tl.program_id(2).to(tl.int64)
    col_ok = cols < C
    bias = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    pre = _pre(x_ptr + b * stride_xb, past_ptr + b * stride_pb, t, T, stride_xt, stride_pt, w_ptr, bias, cols, col_ok,
               K, HAS_PAST, BLOCK_T, BLOCK_C)
    y = pre * tl.sigmoid(pre)
    mask = (t < T)[:, None] & col_ok[None, :]
    tl.store(y_ptr + b * stride_yb + t.to(tl.int64)[:, None] * stride_yt + cols[None, :], y.to(y_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _conv_dpre_kernel(x_ptr, past_ptr, w_ptr, b_ptr, dy_ptr, dpre_ptr, dw_ptr, db_ptr, T, C,
                      stride_xb, stride_xt, stride_pb, stride_pt, stride_dyb, stride_dyt, stride_qb, stride_qt,
                      K: tl.constexpr, HAS_PAST: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """Pass 1: dpre = dy * silu'(pre) at positions t, stored; this program's partial dw, dbias."""
    pid_t = tl.program_id(0)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    b = tl.program_id(2).to(tl.int64)
    col_ok = cols < C
    t_ok = t < T
    bias = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    x_base = x_ptr + b * stride_xb
    past_base = past_ptr + b * stride_pb
    pre = _pre(x_base, past_base, t, T, stride_xt, stride_pt, w_ptr, bias, cols, col_ok, K, HAS_PAST, BLOCK_T,
               BLOCK_C)
    sig = tl.sigmoid(pre)
    mask = t_ok[:, None] & col_ok[None, :]
    t64 = t.to(tl.int64)[:, None]
    dy = tl.load(dy_ptr + b * stride_dyb + t64 * stride_dyt + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    dpre = dy * sig * (1.0 + pre * (1.0 - sig))  # 0 on rows t >= T (dy is 0 there)
    tl.store(dpre_ptr + b * stride_qb + t64 * stride_qt + cols[None, :], dpre.to(dpre_ptr.dtype.element_ty), mask=mask)
    part = (b * tl.num_programs(0) + pid_t) * C
    tl.store(db_ptr + part + cols, tl.sum(dpre, 0), mask=col_ok)
    for k in tl.static_range(K):
        xk = _load_xp(x_base, past_base, t + k, stride_xt, stride_pt, cols, t_ok, col_ok, K, HAS_PAST)
        tl.store(dw_ptr + (part + cols) * K + k, tl.sum(dpre * xk, 0), mask=col_ok)


@triton.jit
def _conv_dx_kernel(dpre_ptr, w_ptr, dxp_ptr, T, C, stride_qb, stride_qt, stride_db, stride_dt,
                    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """Pass 2: dxp[r] = sum_k w[k] * dpre[r - k] over padded rows r of [past; x]."""
    r = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    b = tl.program_id(2).to(tl.int64)
    col_ok = cols < C
    dxp = tl.zeros([BLOCK_T, BLOCK_C], tl.float32)
    for k in tl.static_range(K):
        t = r - k
        t_ok = (t >= 0) & (t < T)
        d = tl.load(dpre_ptr + b * stride_qb + tl.where(t_ok, t, 0).to(tl.int64)[:, None] * stride_qt + cols[None, :],
                    mask=t_ok[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
        wk = tl.load(w_ptr + cols * K + k, mask=col_ok, other=0.0).to(tl.float32)
        dxp += wk[None, :] * d
    mask = (r < T + K - 1)[:, None] & col_ok[None, :]
    tl.store(dxp_ptr + b * stride_db + r.to(tl.int64)[:, None] * stride_dt + cols[None, :],
             dxp.to(dxp_ptr.dtype.element_ty), mask=mask)


BLOCK_T, BLOCK_C = 64, 64


def conv1d_silu_fwd(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, past: torch.Tensor | None) -> torch.Tensor:
    """x [B, T, C] (unit stride along C), w [C, K] contiguous, bias [C], past [B, K-1, C] or None
    (zeros) -> y [B, T, C] in x's dtype."""
    bsz, T, C = x.shape
    K = w.shape[1]
    y = torch.empty((bsz, T, C), device=x.device, dtype=x.dtype)
    if T == 0 or bsz == 0:
        return y
    p = past if past is not None else x
    _conv_fwd_kernel[(triton.cdiv(T, BLOCK_T), triton.cdiv(C, BLOCK_C), bsz)](
        x, p, w, bias, y, T, C, x.stride(0), x.stride(1), p.stride(0), p.stride(1), y.stride(0), y.stride(1),
        K=K, HAS_PAST=past is not None, BLOCK_T=BLOCK_T, BLOCK_C=BLOCK_C,
    )
    return y


def conv1d_silu_bwd(dy: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor,
                    past: torch.Tensor | None):
    """Gradients: dx [B, T, C] (x's dtype), dw [C, K] and dbias [C] (fp32), dpast [B, K-1, C]
    (past's dtype; None without past)."""
    bsz, T, C = x.shape
    K = w.shape[1]
    dxp = torch.empty((bsz, T + K - 1, C), device=x.device, dtype=x.dtype)
    dpre = torch.empty((bsz, T, C), device=x.device, dtype=x.dtype)  # x's precision, as PyTorch's conv backward
    n_t = triton.cdiv(T, BLOCK_T)
    dw = torch.empty((bsz * n_t, C, K), device=x.device, dtype=torch.float32)  # every row written by its program
    db = torch.empty((bsz * n_t, C), device=x.device, dtype=torch.float32)
    p = past if past is not None else x
    if T and bsz:
        n_c = triton.cdiv(C, BLOCK_C)
        _conv_dpre_kernel[(n_t, n_c, bsz)](
            x, p, w, bias, dy, dpre, dw, db, T, C, x.stride(0), x.stride(1), p.stride(0), p.stride(1),
            dy.stride(0), dy.stride(1), dpre.stride(0), dpre.stride(1),
            K=K, HAS_PAST=past is not None, BLOCK_T=BLOCK_T, BLOCK_C=BLOCK_C,
        )
        _conv_dx_kernel[(triton.cdiv(T + K - 1, BLOCK_T), n_c, bsz)](
            dpre, w, dxp, T, C, dpre.stride(0), dpre.stride(1), dxp.stride(0), dxp.stride(1),
            K=K, BLOCK_T=BLOCK_T, BLOCK_C=BLOCK_C,
        )
    else:  # no position: the carried state gets no gradient
        dxp.zero_()
    dpast = dxp[:, : K - 1].to(past.dtype) if past is not None else None
    return dxp[:, K - 1 :], dw.sum(0), db.sum(0), dpast
