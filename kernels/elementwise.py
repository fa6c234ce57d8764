"""Triton kernels of the hybrid block's elementwise glue, each one pass forward and one backward:

* SwiGLU activation: y = silu(gate) * up, gate and up the two halves of one projection
  gu [rows, 2H] (read in place);
      dgate = dy * up * silu'(gate),  dup = dy * silu(gate), written into one dgu [rows, 2H].
* Fusion gate with the residual: out = x + g * s + (1 - g) * a, g = sigmoid(p);
      dx = dout,  ds = dout * g,  da = dout * (1 - g),  dp = dout * (s - a) * g * (1 - g).
* The scan bias folded into the keys (formulas above the kernels): 8 PyTorch ops forward, through
  fp32 copies of [T, H, D] tensors, and more backward (the largest unfused share of a base-preset
  forward's elementwise bytes, benchmarks/elementwise_trace.py --inference).

The references are the PyTorch expressions in genossa/ops/fused.py and ops/sparse_attention/bias.py. As PyTorch ops they were
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


# The scan-informed bias folded into the keys (genossa/ops/sparse_attention/bias.py), per row
# r = (token, head) of D features: kf = scale k + lam_h ws,  kb = mu_h <k, wks>;
#     dk = scale dkf + mu_h dkb wks,  dws = lam_h dkf,  dwks = mu_h dkb k,
#     dlam_h = sum_r <dkf, ws>,  dmu_h = sum_r dkb <k, wks>  (per-row partials, summed by torch).
# k, ws, wks are read through a token stride (k is a slice of the fused q/k/v projection).

@triton.jit
def _fold_rows(rows, cols, R, H, D, stride_t):
    """Offsets [BR, BD] of the (token, head) rows' features for a tensor with token stride stride_t."""
    r64 = rows.to(tl.int64)
    return ((r64 // H) * stride_t + (r64 % H) * D)[:, None] + cols[None, :]


@triton.jit
def _fold_inputs(k_ptr, ws_ptr, wks_ptr, lam_ptr, mu_ptr, R, H, D, stride_k, stride_ws, stride_wks,
                 BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's rows and masks, lam and mu per row [BR], and k, ws, wks [BR, BD] in fp32."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    row_mask = rows < R
    mask = row_mask[:, None] & (cols < D)[None, :]
    head = rows % H
    lam = tl.load(lam_ptr + head, mask=row_mask, other=0.0).to(tl.float32)
    mu = tl.load(mu_ptr + head, mask=row_mask, other=0.0).to(tl.float32)
    k = _load_fp32(k_ptr, _fold_rows(rows, cols, R, H, D, stride_k), mask)
    ws = _load_fp32(ws_ptr, _fold_rows(rows, cols, R, H, D, stride_ws), mask)
    wks = _load_fp32(wks_ptr, _fold_rows(rows, cols, R, H, D, stride_wks), mask)
    return rows, cols, row_mask, mask, lam, mu, k, ws, wks


@triton.jit
def _fold_bias_fwd_kernel(k_ptr, ws_ptr, wks_ptr, lam_ptr, mu_ptr, kf_ptr, kb_ptr, R, H, D,
                          stride_k, stride_ws, stride_wks, scale,
                          BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows, cols, row_mask, mask, lam, mu, k, ws, wks = _fold_inputs(
        k_ptr, ws_ptr, wks_ptr, lam_ptr, mu_ptr, R, H, D, stride_k, stride_ws, stride_wks, BLOCK_R, BLOCK_D)
    kf = scale * k + lam[:, None] * ws
    tl.store(kf_ptr + _fold_rows(rows, cols, R, H, D, H * D), kf.to(kf_ptr.dtype.element_ty), mask=mask)
    tl.store(kb_ptr + rows, mu * tl.sum(k * wks, axis=1), mask=row_mask)


@triton.jit
def _fold_bias_bwd_kernel(dkf_ptr, dkb_ptr, k_ptr, ws_ptr, wks_ptr, lam_ptr, mu_ptr,
                          dk_ptr, dws_ptr, dwks_ptr, dlam_ptr, dmu_ptr, R, H, D,
                          stride_k, stride_ws, stride_wks, scale,
                          BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows, cols, row_mask, mask, lam, mu, k, ws, wks = _fold_inputs(
        k_ptr, ws_ptr, wks_ptr, lam_ptr, mu_ptr, R, H, D, stride_k, stride_ws, stride_wks, BLOCK_R, BLOCK_D)
    dense = _fold_rows(rows, cols, R, H, D, H * D)  # the gradients' (and dkf's) contiguous rows
    dkf = _load_fp32(dkf_ptr, dense, mask)
    dkb = tl.load(dkb_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
    mdkb = (mu * dkb)[:, None]
    tl.store(dk_ptr + dense, (scale * dkf + mdkb * wks).to(dk_ptr.dtype.element_ty), mask=mask)
    tl.store(dws_ptr + dense, (lam[:, None] * dkf).to(dws_ptr.dtype.element_ty), mask=mask)
    tl.store(dwks_ptr + dense, (mdkb * k).to(dwks_ptr.dtype.element_ty), mask=mask)
    tl.store(dlam_ptr + rows, tl.sum(dkf * ws, axis=1), mask=row_mask)
    tl.store(dmu_ptr + rows, dkb * tl.sum(k * wks, axis=1), mask=row_mask)


FOLD_BLOCK_R = 32


def _token_stride(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(t, its token stride) for [B, T, H, D] with (H, D) packed and (B, T) one token axis; a
    contiguous copy where the layout is otherwise."""
    B, T, H, D = t.shape
    if not (t.stride(3) == 1 and t.stride(2) == D and (B == 1 or t.stride(0) == T * t.stride(1))):
        t = t.contiguous()
    return t, t.stride(1)


def fold_bias_fwd(k, ws, wks, lam, mu, scale):
    """(k~ [B, T, H, D] contiguous in k's dtype, b [B, T, H] fp32); k, ws, wks [B, T, H, D]."""
    B, T, H, D = k.shape
    (k, sk), (ws, sws), (wks, swks) = map(_token_stride, (k, ws, wks))
    kf = torch.empty((B, T, H, D), device=k.device, dtype=k.dtype)
    kb = torch.empty((B, T, H), device=k.device, dtype=torch.float32)
    R = B * T * H
    if R:
        _fold_bias_fwd_kernel[(triton.cdiv(R, FOLD_BLOCK_R),)](
            k, ws, wks, lam, mu, kf, kb, R, H, D, sk, sws, swks, float(scale),
            BLOCK_R=FOLD_BLOCK_R, BLOCK_D=triton.next_power_of_2(D))
    return kf, kb


def fold_bias_bwd(dkf, dkb, k, ws, wks, lam, mu, scale):
    """(dk, dws, dwks [B, T, H, D] in their inputs' dtypes, dlam [H], dmu [H] fp32)."""
    B, T, H, D = k.shape
    dkf, dkb = dkf.contiguous(), dkb.contiguous()
    dk, dws, dwks = (torch.empty((B, T, H, D), device=k.device, dtype=t.dtype) for t in (k, ws, wks))
    (k, sk), (ws, sws), (wks, swks) = map(_token_stride, (k, ws, wks))
    R = B * T * H
    dlam = torch.zeros(R, device=k.device, dtype=torch.float32)
    dmu = torch.zeros(R, device=k.device, dtype=torch.float32)
    if R:
        _fold_bias_bwd_kernel[(triton.cdiv(R, FOLD_BLOCK_R),)](
            dkf, dkb, k, ws, wks, lam, mu, dk, dws, dwks, dlam, dmu, R, H, D, sk, sws, swks, float(scale),
            BLOCK_R=FOLD_BLOCK_R, BLOCK_D=triton.next_power_of_2(D))
    return dk, dws, dwks, dlam.view(-1, H).sum(0), dmu.view(-1, H).sum(0)
