"""Triton kernels of the (gated) RMSNorm: y = g * rstd * w with g = x or g = x * silu(z) rounded
to x's dtype, rstd = 1 / sqrt(mean(g^2) + eps), statistics in fp32.

The reference is `rms_norm_reference` (genossa/modules/norms.py). Written as PyTorch ops the norm
took ~20 elementwise kernels per call (fp32 casts, square, mean, rsqrt, products, and their
backward): in a bf16 training step of the small preset the norms were most of the step's
elementwise traffic (benchmarks/RESULTS.md). Here forward and backward are one pass each over
rows of D values: a program holds ROWS whole rows (BLOCK_D = next power of two >= D).

Backward, with xhat = g * rstd and dxhat = dy * w:
    dg = rstd * (dxhat - xhat * mean(dxhat * xhat)),  dw = sum over rows of dy * xhat,
    gated: dx = dg * silu(z), dz = dg * x * sig(z) * (1 + z * (1 - sig(z))).
Each backward program walks a contiguous range of rows and writes its partial dw [D] (fp32);
the launcher sums the partials.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gate(x, z, OUT_DTYPE: tl.constexpr):
    """x * silu(z) in fp32, rounded to the input dtype as the reference does."""
    return (x * (z * tl.sigmoid(z))).to(OUT_DTYPE).to(tl.float32)


@triton.jit
def _rms_norm_fwd_kernel(x_ptr, z_ptr, w_ptr, y_ptr, rstd_ptr, n_rows, D, eps, stride_x, stride_z, stride_y,
                         HAS_Z: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_D)
    row_ok = rows < n_rows
    col_ok = cols < D
    mask = row_ok[:, None] & col_ok[None, :]
    r64 = rows.to(tl.int64)[:, None]
    x = tl.load(x_ptr + r64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + r64 * stride_z + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        g = _gate(x, z, x_ptr.dtype.element_ty)
    else:
        g = x
    rstd = 1.0 / tl.sqrt(tl.sum(g * g, 1) / D + eps)
    w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = g * rstd[:, None] * w[None, :]
    tl.store(y_ptr + r64 * stride_y + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + rows, rstd, mask=row_ok)


@triton.jit
def _rms_norm_bwd_kernel(dy_ptr, x_ptr, z_ptr, w_ptr, rstd_ptr, dx_ptr, dz_ptr, dw_ptr, n_rows, D, rows_per_program,
                         stride_dy, stride_x, stride_z, stride_dx, stride_dz,
                         HAS_Z: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < D
    w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_D], tl.float32)
    first = pid * rows_per_program  # rows_per_program is a multiple of ROWS: ranges never overlap
    for r0 in range(first, first + rows_per_program, ROWS):
        rows = r0 + tl.arange(0, ROWS)
        row_ok = rows < n_rows
        mask = row_ok[:, None] & col_ok[None, :]
        r64 = rows.to(tl.int64)[:, None]
        x = tl.load(x_ptr + r64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + r64 * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows, mask=row_ok, other=0.0)
        if HAS_Z:
            z = tl.load(z_ptr + r64 * stride_z + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            g = _gate(x, z, x_ptr.dtype.element_ty)
        else:
            g = x
        xhat = g * rstd[:, None]
        dxhat = dy * w[None, :]
        dw += tl.sum(dy * xhat, 0)
        dg = rstd[:, None] * (dxhat - xhat * (tl.sum(dxhat * xhat, 1) / D)[:, None])
        if HAS_Z:
            sig = tl.sigmoid(z)
            dz = dg * x * sig * (1.0 + z * (1.0 - sig))
            tl.store(dz_ptr + r64 * stride_dz + cols[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
            dx = dg * z * sig
        else:
            dx = dg
        tl.store(dx_ptr + r64 * stride_dx + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(dw_ptr + pid.to(tl.int64) * D + cols, dw, mask=col_ok)


def _tiles(D: int) -> tuple[int, int, int]:
    """(BLOCK_D, ROWS, num_warps): about 4k fp32 values per program and operand."""
    block_d = max(16, triton.next_power_of_2(D))
    rows = max(1, min(16, 4096 // block_d))
    return block_d, rows, 4 if block_d <= 1024 else 8


def rms_norm_fwd(x2: torch.Tensor, w: torch.Tensor, z2: torch.Tensor | None, eps: float):
    """x2, z2 [rows, D] (unit stride along D), w [D] -> y [rows, D] (x's dtype), rstd [rows] fp32."""
    n_rows, D = x2.shape
    y = torch.empty((n_rows, D), device=x2.device, dtype=x2.dtype)
    rstd = torch.empty(n_rows, device=x2.device, dtype=torch.float32)
    if n_rows == 0:
        return y, rstd
    block_d, rows, warps = _tiles(D)
    zt = z2 if z2 is not None else x2
    _rms_norm_fwd_kernel[(triton.cdiv(n_rows, rows),)](
        x2, zt, w, y, rstd, n_rows, D, eps, x2.stride(0), zt.stride(0), y.stride(0),
        HAS_Z=z2 is not None, BLOCK_D=block_d, ROWS=rows, num_warps=warps,
    )
    return y, rstd


def rms_norm_bwd(dy2: torch.Tensor, x2: torch.Tensor, w: torch.Tensor, z2: torch.Tensor | None, rstd: torch.Tensor,
                 programs: int | None = None):
    """Gradients dx [rows, D] (x's dtype), dw [D] (w's dtype), dz (z's dtype, or None)."""
    n_rows, D = x2.shape
    dx = torch.empty((n_rows, D), device=x2.device, dtype=x2.dtype)
    dz = torch.empty((n_rows, D), device=x2.device, dtype=z2.dtype) if z2 is not None else None
    if n_rows == 0:
        return dx, torch.zeros_like(w), dz
    block_d, rows, warps = _tiles(D)
    if programs is None:  # a few waves of programs: enough parallelism, few partial dw rows to sum
        programs = 4 * torch.cuda.get_device_properties(x2.device).multi_processor_count if x2.is_cuda else 4
    per = triton.cdiv(triton.cdiv(n_rows, programs), rows) * rows
    programs = triton.cdiv(n_rows, per)
    dw = torch.empty((programs, D), device=x2.device, dtype=torch.float32)
    zt, dzt = (z2, dz) if z2 is not None else (x2, dx)
    _rms_norm_bwd_kernel[(programs,)](
        dy2, x2, zt, w, rstd, dx, dzt, dw, n_rows, D, per,
        dy2.stride(0), x2.stride(0), zt.stride(0), dx.stride(0), dzt.stride(0),
        HAS_Z=z2 is not None, BLOCK_D=block_d, ROWS=rows, num_warps=warps,
    )
    return dx, dw.sum(0).to(w.dtype), dz
