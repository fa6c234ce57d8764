"""Triton backward kernels of the chunked Mamba2 SSD scan (forward: ssd_fwd.py, maths: naive.py).

Per batch b, head h, chunk c (notation of ssd_fwd.py; G_ts = C_t . B_s, Dcy_ts = exp(acum_t -
acum_s) for s <= t, dy = dout * silu(z) when gated):

1. `_chunk_dstate_kernel`, grid (NC, B*H): E_c = sum_t exp(acum_t) dy_t C_t^T [P, N], what the
   chunk's outputs send back to the state before the chunk.
2. `_state_passing_bwd_kernel`, grid (P*N / BLOCK, B*H): the reverse pass over chunks,
   dH_c = exp(acum_last_c) dH_{c+1} + E_c from dH_NC = d(final state); E_c is overwritten by
   dS_c = dH_{c+1} (the gradient of the state after chunk c) and partial sums of
   exp(acum_last_c) <dH_{c+1}, H_c> (the chunk decay's own gradient) go to `glast`.
   dH_0 is the gradient of the initial state.
3. `_chunk_bwd_kernel`, grid (NC, B*H): everything inside a chunk. A first pass over source
   blocks s (inner loop over targets t >= s) gives dx, dB (per head), the direct part of ddt
   and the column sums of W_ts = (dy_t . x_s) G_ts Dcy_ts dt_s; a second pass over target blocks
   t (inner loop over s <= t) gives dC (per head) and the row sums of W. Also dz and per-chunk
   partial sums of dD.

The decay gradient is assembled by the launcher in torch on [B, T, H] scalars: the gradient of
acum_t is g_t = rowsum(W)_t - colsum(W)_t (+ the start-state and chunk-state terms, added in
the kernel), the gradient of a_l is the reverse cumulative sum of g inside the chunk plus the
chunk-level terms (every a_l enters acum_last), then ddt += A * da and dA = sum(da * dt).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from genossa.kernels.ssd_fwd import (
    STATE_PASS_GROUP, _chunk_log_decay, _dot_prec, _elem, _empty, _launch_params, _load_dt_block, _load_gram, _row,
    chunk_gram, state_pass_block,
)


@triton.jit
def _load_dy(dout_ptr, z_ptr, ypre_ptr, offs, mask, HAS_Z: tl.constexpr):
    """dy = dout * silu(z) (fp32) and dz (fp32, zeros without z) for one [BL, BP] tile."""
    # [BL, BP]
    dout = tl.load(dout_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        # [BL, BP]
        zz = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        yp = tl.load(ypre_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        sig = tl.sigmoid(zz)
        dy = dout * zz * sig
        dz = dout * yp * sig * (1.0 + zz * (1.0 - sig))
    else:
        dy = dout
        dz = dout
    return dy, dz


@triton.jit
def _chunk_dstate_kernel(
    dout_ptr, z_ptr, ypre_ptr, dt_ptr, A_ptr, C_ptr, dstates_ptr,
    T, H, P, N, heads_per_group,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_Z: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dout, z, ypre share x's strides."""
    bh = tl.program_id(0)
    c = tl.program_id(1)
    b = bh // H
    h = bh % H
    g = h // heads_per_group
    t0 = c * CHUNK
    xoff = b * stride_x_b + h * stride_x_h
    dt_ptr += b * stride_dt_b + h * stride_dt_h
    C_ptr += b * stride_B_b + g * stride_B_g
    A_h = tl.load(A_ptr + h).to(tl.float32)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    carry = 0.0
    for lb in range(0, CHUNK, BLOCK_L):
        offs_l = lb + tl.arange(0, BLOCK_L)
        dt, a, acum, mask_l = _load_dt_block(dt_ptr, stride_dt_t, offs_l, t0, T, CHUNK, A_h, carry)
        carry += tl.sum(a, axis=0)
        # [BP, BL] dy transposed
        offs_T = xoff + (t0 + offs_l)[None, :] * stride_x_t + offs_p[:, None]
        dyT, _ = _load_dy(dout_ptr, z_ptr, ypre_ptr, offs_T, mask_l[None, :] & (offs_p[:, None] < P), HAS_Z)
        # [BL, BN]
        C_l = tl.load(
            C_ptr + (t0 + offs_l)[:, None] * stride_B_t + offs_n[None, :],
            mask=mask_l[:, None] & (offs_n[None, :] < N), other=0.0,
        )
        acc += tl.dot((dyT * tl.exp(acum)[None, :]).to(C_l.dtype), C_l, input_precision=DOT_PREC)
    tl.store(
        dstates_ptr + b * stride_s_b + c * stride_s_c + h * stride_s_h + offs_p[:, None] * N + offs_n[None, :],
        acc, mask=(offs_p[:, None] < P) & (offs_n[None, :] < N),
    )


@triton.jit
def _state_passing_bwd_kernel(
    dstates_ptr, starts_ptr, decay_ptr, dfinal_ptr, dinit_ptr, glast_ptr,
    H, PN, NC,
    stride_s_b, stride_s_c, stride_s_h,
    HAS_DFINAL: tl.constexpr, HAS_DINIT: tl.constexpr, BLOCK: tl.constexpr, GROUP: tl.constexpr,
):
    """glast is [n_blocks, B*H, NC] fp32: partial sums over this program's slice of P*N. GROUP
    chunks (from the last one back) are loaded at once, as in the forward pass."""
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < PN
    rows = tl.arange(0, GROUP)
    if HAS_DFINAL:
        # [BLOCK]
        dstate = tl.load(dfinal_ptr + bh * PN + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        dstate = tl.zeros((BLOCK,), dtype=tl.float32)
    soff = b * stride_s_b + h * stride_s_h
    glast_ptr += (pid * tl.num_programs(1) + bh) * NC
    for i0 in range(0, NC, GROUP):
        cs = NC - 1 - i0 - rows  # row i holds chunk NC - 1 - i0 - i: the order of the chain
        c_ok = cs >= 0
        tile_mask = c_ok[:, None] & mask[None, :]
        off = soff + cs[:, None] * stride_s_c + offs[None, :]
        # [GROUP, BLOCK]; chunks before 0 read e = start = 0 and decay 1
        e = tl.load(dstates_ptr + off, mask=tile_mask, other=0.0)
        start = tl.load(starts_ptr + off, mask=tile_mask, other=0.0)
        decay = tl.exp(tl.load(decay_ptr + bh * NC + cs, mask=c_ok, other=0.0))
        after = tl.zeros((GROUP, BLOCK), dtype=tl.float32)
        glast = tl.zeros((GROUP,), dtype=tl.float32)
        for i in tl.static_range(GROUP):
            sel = rows == i
            decay_i = _elem(decay, rows, i)
            glast = tl.where(sel, decay_i * tl.sum(dstate * _row(start, rows, i), axis=0), glast)
            after = tl.where(sel[:, None], dstate[None, :], after)
            dstate = decay_i * dstate + _row(e, rows, i)
        tl.store(glast_ptr + cs, glast, mask=c_ok)
        tl.store(dstates_ptr + off, after, mask=tile_mask)
    if HAS_DINIT:
        tl.store(dinit_ptr + bh * PN + offs, dstate, mask=mask)


@triton.jit
def _chunk_bwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, ypre_ptr, dout_ptr, starts_ptr, dS_ptr, cb_ptr,
    dx_ptr, dz_ptr, dB_ptr, dC_ptr, ddt_ptr, grow_ptr, gcol_ptr, vsum_ptr, dD_ptr,
    T, H, P, N, G, heads_per_group, NC,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    stride_dB_b, stride_dB_t, stride_dB_h,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_GRAM: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """x, z, ypre, dout, dx, dz share x's strides; B, C share B's; dB, dC are per head
    [B, T, H, N] fp32; dt, ddt, grow, gcol share dt's strides ([B, T, H]); vsum, dD are [B*H, NC];
    with HAS_GRAM, cb is C B^T per chunk and group ([B, NC, G, CHUNK, CHUNK] fp32)."""
    bh = tl.program_id(0)
    c = tl.program_id(1)
    b = bh // H
    h = bh % H
    g = h // heads_per_group
    t0 = c * CHUNK
    xoff = b * stride_x_b + h * stride_x_h
    dtoff = b * stride_dt_b + h * stride_dt_h
    dt_ptr += dtoff
    B_ptr += b * stride_B_b + g * stride_B_g
    C_ptr += b * stride_B_b + g * stride_B_g
    dBoff = b * stride_dB_b + h * stride_dB_h
    A_h = tl.load(A_ptr + h).to(tl.float32)
    dtype = x_ptr.dtype.element_ty
    cb_ptr += ((b * NC + c) * G + g) * CHUNK * CHUNK

    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    offs_b = tl.arange(0, BLOCK_L)
    mask_pn = (offs_p[:, None] < P) & (offs_n[None, :] < N)
    soff = b * stride_s_b + c * stride_s_c + h * stride_s_h + offs_p[:, None] * N + offs_n[None, :]
    # [BP, BN] gradient of the state after the chunk
    dS = tl.load(dS_ptr + soff, mask=mask_pn, other=0.0).to(dtype)
    a_total = _chunk_log_decay(dt_ptr, stride_dt_t, t0, T, A_h, CHUNK, BLOCK_L)
    if HAS_D:
        D_h = tl.load(D_ptr + h).to(tl.float32)

    # pass 1: source blocks s; inner loop over target blocks t >= s
    vsum = 0.0
    dD_acc = 0.0
    carry_k = 0.0
    for kb in range(0, CHUNK, BLOCK_L):
        offs_k = kb + offs_b
        dt_k, a_k, acum_k, mask_k = _load_dt_block(dt_ptr, stride_dt_t, offs_k, t0, T, CHUNK, A_h, carry_k)
        kx_offs = xoff + (t0 + offs_k)[:, None] * stride_x_t + offs_p[None, :]
        mask_kx = mask_k[:, None] & (offs_p[None, :] < P)
        # [BL, BP]
        x_k = tl.load(x_ptr + kx_offs, mask=mask_kx, other=0.0)
        # [BL, BN]
        B_k = tl.load(
            B_ptr + (t0 + offs_k)[:, None] * stride_B_t + offs_n[None, :],
            mask=mask_k[:, None] & (offs_n[None, :] < N), other=0.0,
        )
        # through the chunk's state: S = sum_s exp(a_total - acum_s) dt_s x_s B_s^T
        dec_k = tl.exp(a_total - acum_k)
        bds = tl.dot(B_k, tl.trans(dS), input_precision=DOT_PREC)  # [BL, BP]
        dx_acc = bds * (dt_k * dec_k)[:, None]
        xds = tl.dot(x_k, dS, input_precision=DOT_PREC)  # [BL, BN]
        dB_acc = xds * (dt_k * dec_k)[:, None]
        ddt_acc = tl.sum(x_k.to(tl.float32) * bds, axis=1) * dec_k
        v = ddt_acc * dt_k
        vsum += tl.sum(v, axis=0)
        gcol = v

        carry_m = carry_k
        for mb in range(kb, CHUNK, BLOCK_L):
            offs_m = mb + offs_b
            dt_m, a_m, acum_m, mask_m = _load_dt_block(dt_ptr, stride_dt_t, offs_m, t0, T, CHUNK, A_h, carry_m)
            carry_m += tl.sum(a_m, axis=0)
            # [BL, BN]
            C_m = tl.load(
                C_ptr + (t0 + offs_m)[:, None] * stride_B_t + offs_n[None, :],
                mask=mask_m[:, None] & (offs_n[None, :] < N), other=0.0,
            )
            mx_offs = xoff + (t0 + offs_m)[:, None] * stride_x_t + offs_p[None, :]
            # [BL, BP]
            dy_m, _ = _load_dy(dout_ptr, z_ptr, ypre_ptr, mx_offs, mask_m[:, None] & (offs_p[None, :] < P), HAS_Z)
            dy_mc = dy_m.to(dtype)
            causal = offs_m[:, None] >= offs_k[None, :]
            dcy = tl.exp(tl.where(causal, acum_m[:, None] - acum_k[None, :], -float("inf")))
            # [BL(t), BL(s)]
            if HAS_GRAM:
                gd = _load_gram(cb_ptr, offs_m, offs_k, CHUNK) * dcy
            else:
                gd = tl.dot(C_m, tl.trans(B_k), input_precision=DOT_PREC) * dcy
            dm = tl.dot(dy_mc, tl.trans(x_k), input_precision=DOT_PREC)
            mm = gd * dt_k[None, :]
            dx_acc += tl.dot(tl.trans(mm.to(dtype)), dy_mc, input_precision=DOT_PREC)
            dg = dm * dcy * dt_k[None, :]
            dB_acc += tl.dot(tl.trans(dg.to(dtype)), C_m, input_precision=DOT_PREC)
            dmgd = dm * gd
            ddt_acc += tl.sum(dmgd, axis=0)
            gcol += tl.sum(dmgd * dt_k[None, :], axis=0)

        # [BL, BP] this block's own dy: the skip D and the gate
        dy_k, dz_k = _load_dy(dout_ptr, z_ptr, ypre_ptr, kx_offs, mask_kx, HAS_Z)
        if HAS_D:
            dx_acc += D_h * dy_k
            dD_acc += tl.sum(tl.sum(dy_k * x_k.to(tl.float32), axis=1), axis=0)
        if HAS_Z:
            tl.store(dz_ptr + kx_offs, dz_k.to(dz_ptr.dtype.element_ty), mask=mask_kx)
        tl.store(dx_ptr + kx_offs, dx_acc.to(dx_ptr.dtype.element_ty), mask=mask_kx)
        tl.store(
            dB_ptr + dBoff + (t0 + offs_k)[:, None] * stride_dB_t + offs_n[None, :], dB_acc,
            mask=mask_k[:, None] & (offs_n[None, :] < N),
        )
        k_offs = dtoff + (t0 + offs_k) * stride_dt_t
        tl.store(ddt_ptr + k_offs, ddt_acc, mask=mask_k)
        tl.store(gcol_ptr + k_offs, gcol, mask=mask_k)
        carry_k += tl.sum(a_k, axis=0)
    tl.store(vsum_ptr + bh * NC + c, vsum)
    if HAS_D:
        tl.store(dD_ptr + bh * NC + c, dD_acc)

    # pass 2: target blocks t; inner loop over source blocks s <= t
    # [BP, BN] state before the chunk
    start = tl.load(starts_ptr + soff, mask=mask_pn, other=0.0).to(dtype)
    carry_m = 0.0
    for mb in range(0, CHUNK, BLOCK_L):
        offs_m = mb + offs_b
        dt_m, a_m, acum_m, mask_m = _load_dt_block(dt_ptr, stride_dt_t, offs_m, t0, T, CHUNK, A_h, carry_m)
        carry_m += tl.sum(a_m, axis=0)
        # [BL, BN]
        C_m = tl.load(
            C_ptr + (t0 + offs_m)[:, None] * stride_B_t + offs_n[None, :],
            mask=mask_m[:, None] & (offs_n[None, :] < N), other=0.0,
        )
        mx_offs = xoff + (t0 + offs_m)[:, None] * stride_x_t + offs_p[None, :]
        # [BL, BP]
        dy_m, _ = _load_dy(dout_ptr, z_ptr, ypre_ptr, mx_offs, mask_m[:, None] & (offs_p[None, :] < P), HAS_Z)
        dy_mc = dy_m.to(dtype)
        # through the state before the chunk: y_t += exp(acum_t) H_c C_t
        dC_acc = tl.dot(dy_mc, start, input_precision=DOT_PREC) * tl.exp(acum_m)[:, None]  # [BL, BN]
        grow = tl.sum(dC_acc * C_m.to(tl.float32), axis=1)
        carry_k = 0.0
        for kb in range(0, mb + BLOCK_L, BLOCK_L):
            offs_k = kb + offs_b
            dt_k, a_k, acum_k, mask_k = _load_dt_block(dt_ptr, stride_dt_t, offs_k, t0, T, CHUNK, A_h, carry_k)
            carry_k += tl.sum(a_k, axis=0)
            # [BL, BP]
            x_k = tl.load(
                x_ptr + xoff + (t0 + offs_k)[:, None] * stride_x_t + offs_p[None, :],
                mask=mask_k[:, None] & (offs_p[None, :] < P), other=0.0,
            )
            # [BL, BN]
            B_k = tl.load(
                B_ptr + (t0 + offs_k)[:, None] * stride_B_t + offs_n[None, :],
                mask=mask_k[:, None] & (offs_n[None, :] < N), other=0.0,
            )
            causal = offs_m[:, None] >= offs_k[None, :]
            dcy = tl.exp(tl.where(causal, acum_m[:, None] - acum_k[None, :], -float("inf")))
            dm = tl.dot(dy_mc, tl.trans(x_k), input_precision=DOT_PREC)
            dg = dm * dcy * dt_k[None, :]
            dC_acc += tl.dot(dg.to(dtype), B_k, input_precision=DOT_PREC)
            if HAS_GRAM:
                gb = _load_gram(cb_ptr, offs_m, offs_k, CHUNK)
            else:
                gb = tl.dot(C_m, tl.trans(B_k), input_precision=DOT_PREC)
            grow += tl.sum(dg * gb, axis=1)
        tl.store(
            dC_ptr + dBoff + (t0 + offs_m)[:, None] * stride_dB_t + offs_n[None, :], dC_acc,
            mask=mask_m[:, None] & (offs_n[None, :] < N),
        )
        tl.store(grow_ptr + dtoff + (t0 + offs_m) * stride_dt_t, grow, mask=mask_m)


def ssd_bwd(dout, dfinal, x, dt, A, B, C, D, z, y_pre, starts, decay, chunk_size, has_initial, *,
            block_l=None, num_warps=4, use_gram=True):
    """Gradients of the chunked SSD. Inputs as saved by ssd_fwd (contiguous). dfinal may be None.

    Returns (dx, ddt, dA, dB, dC, dD, dz, dinitial) with None for absent D / z / initial state;
    dB, dC are summed over the heads of each group; ddt, dA, dD, dinitial are fp32.
    """
    bsz, T, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    NC = starts.shape[1]
    BLOCK_L, stages = _launch_params(x.dtype, chunk_size, block_l)
    BLOCK_P = max(16, triton.next_power_of_2(P))
    BLOCK_N = max(16, triton.next_power_of_2(N))
    prec = _dot_prec(x.dtype)
    dev = x.device
    f32 = torch.float32
    has_z = z is not None
    grid = (bsz * H, NC)  # heads of one chunk side by side: they share B and C tiles in L2
    dstates = _empty(like=starts)
    zz = z if has_z else x
    yp = y_pre if has_z else x
    _chunk_dstate_kernel[grid](
        dout, zz, yp, dt, A, C, dstates,
        T, H, P, N, H // G,
        x.stride(0), x.stride(1), x.stride(2),
        dt.stride(0), dt.stride(1), dt.stride(2),
        B.stride(0), B.stride(1), B.stride(2),
        starts.stride(0), starts.stride(1), starts.stride(2),
        CHUNK=chunk_size, BLOCK_L=BLOCK_L, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N, HAS_Z=has_z, DOT_PREC=prec,
        num_warps=num_warps, num_stages=stages,
    )
    PN = P * N
    BLOCK = state_pass_block(PN)
    n_blk = triton.cdiv(PN, BLOCK)
    glast = _empty(n_blk, bsz * H, NC, device=dev, dtype=f32)
    dinit = _empty(bsz, H, P, N, device=dev, dtype=f32) if has_initial else None
    _state_passing_bwd_kernel[(n_blk, bsz * H)](
        dstates, starts, decay, dfinal if dfinal is not None else starts,
        dinit if dinit is not None else starts, glast,
        H, PN, NC,
        starts.stride(0), starts.stride(1), starts.stride(2),
        HAS_DFINAL=dfinal is not None, HAS_DINIT=has_initial, BLOCK=BLOCK, GROUP=STATE_PASS_GROUP, num_warps=1,
    )
    cb = chunk_gram(C, B, chunk_size, block_l=BLOCK_L) if use_gram else None
    dx = _empty(like=x)
    dz = _empty(like=z) if has_z else None
    dB_h = _empty(bsz, T, H, N, device=dev, dtype=f32)
    dC_h = _empty(bsz, T, H, N, device=dev, dtype=f32)
    ddt = _empty(bsz, T, H, device=dev, dtype=f32)
    grow = _empty(bsz, T, H, device=dev, dtype=f32)
    gcol = _empty(bsz, T, H, device=dev, dtype=f32)
    vsum = _empty(bsz * H, NC, device=dev, dtype=f32)
    dD_part = _empty(bsz * H, NC, device=dev, dtype=f32) if D is not None else None
    _chunk_bwd_kernel[grid](
        x, dt, A, B, C, D if D is not None else A, zz, yp, dout, starts, dstates, cb if cb is not None else vsum,
        dx, dz if has_z else dx, dB_h, dC_h, ddt, grow, gcol, vsum, dD_part if dD_part is not None else vsum,
        T, H, P, N, G, H // G, NC,
        x.stride(0), x.stride(1), x.stride(2),
        dt.stride(0), dt.stride(1), dt.stride(2),
        B.stride(0), B.stride(1), B.stride(2),
        starts.stride(0), starts.stride(1), starts.stride(2),
        dB_h.stride(0), dB_h.stride(1), dB_h.stride(2),
        CHUNK=chunk_size, BLOCK_L=BLOCK_L, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N,
        HAS_D=D is not None, HAS_Z=has_z, HAS_GRAM=use_gram, DOT_PREC=prec,
        num_warps=num_warps, num_stages=stages,
    )
    # decay gradient: d acum_t = grow_t - gcol_t; d a_l = sum_{t >= l in chunk} d acum_t + the
    # chunk-level terms (every a_l of the chunk enters acum_last)
    g = grow - gcol
    pad = NC * chunk_size - T
    if pad:
        g = torch.nn.functional.pad(g, (0, 0, 0, pad))
    g = g.view(bsz, NC, chunk_size, H)
    da = g.flip(2).cumsum(2).flip(2)
    chunk_terms = (glast.sum(0) + vsum).view(bsz, H, NC).transpose(1, 2)  # [B, NC, H]
    da = (da + chunk_terms[:, :, None, :]).reshape(bsz, NC * chunk_size, H)[:, :T]
    dtf = dt.to(f32)
    ddt = ddt + da * A.to(f32)
    dA = (da * dtf).sum((0, 1))
    dD = dD_part.view(bsz, H, NC).sum((0, 2)) if D is not None else None
    if G != H:
        dB = dB_h.view(bsz, T, G, H // G, N).sum(3)
        dC = dC_h.view(bsz, T, G, H // G, N).sum(3)
    else:
        dB, dC = dB_h, dC_h
    return dx, ddt, dA, dB, dC, dD, dz, dinit
