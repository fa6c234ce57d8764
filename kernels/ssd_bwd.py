"""Triton backward kernels of the chunked Mamba2 SSD scan (forward: ssd_fwd.py, maths: naive.py).

Per batch b, head h, chunk c (notation of ssd_fwd.py; G_ts = C_t . B_s, Dcy_ts = exp(acum_t -
acum_s) for s <= t, dy = dout * silu(z) when gated):

1. `_chunk_dstate_kernel`, grid (B*H, NC): E_c = sum_t exp(acum_t) dy_t C_t^T [P, N], what the
   chunk's outputs send back to the state before the chunk; with a gate it also stores dy.
2. `_state_passing_bwd_kernel`, grid (P*N / BLOCK, B*H): the reverse pass over chunks,
   dH_c = exp(acum_last_c) dH_{c+1} + E_c from dH_NC = d(final state); E_c is overwritten by
   dS_c = dH_{c+1} (the gradient of the state after chunk c) and partial sums of
   exp(acum_last_c) <dH_{c+1}, H_c> (the chunk decay's own gradient) go to `glast`.
   dH_0 is the gradient of the initial state.
3. `_chunk_bwd_kernel`, grid (B*H, NC): per head, one pass over source blocks s (inner loop over
   targets t >= s): dx, dz, the direct part of ddt, partial sums of dD, and the column and row
   sums of W_ts = (dy_t . x_s) G_ts Dcy_ts dt_s.
4. `_group_dB_kernel` and `_group_dC_kernel`, grid (B*G, NC * blocks): dB and dC per group, from
   dG_ts = sum over the group's heads of (dy_t . x_s) Dcy_ts dt_s (the gradient of C B^T) and the
   chunk states: the products with B and C run once per group instead of once per head, and no
   per-head [B, T, H, N] buffers exist (fp32: 8.6 GB each at 1M positions and 16 heads).

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
    STATE_PASS_GROUP, _chunk_log_decay, _dot_prec, _elem, _empty, _launch_params, _load_dt_block, _load_gram,
    _masked_decay, _row,
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
    dout_ptr, z_ptr, ypre_ptr, dt_ptr, A_ptr, C_ptr, dstates_ptr, dy_ptr,
    T, H, P, N, heads_per_group,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_Z: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dout, z, ypre, dy share x's strides. With a gate z, dy = dout * silu(z) is also stored (in
    x's dtype) for the other kernels' products."""
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
        mask_T = mask_l[None, :] & (offs_p[:, None] < P)
        dyT, _ = _load_dy(dout_ptr, z_ptr, ypre_ptr, offs_T, mask_T, HAS_Z)
        if HAS_Z:
            tl.store(dy_ptr + offs_T, dyT.to(dy_ptr.dtype.element_ty), mask=mask_T)
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
def _bwd_pair(dx_acc, ddt_acc, gcol, grow_acc, dcy, x_k, B_k, dt_k, offs_k, mask_m, offs_m, mb, dy_ptr, C_ptr, cb_ptr,
              xoff, t0, P, N, stride_x_t, stride_B_t, offs_p, offs_n, offs_blk, dtype,
              CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, HAS_GRAM: tl.constexpr, DOT_PREC: tl.constexpr):
    """One pair (target block t = offs_m, source block s = offs_k) of _chunk_bwd_kernel, given the
    decays dcy [BL(t), BL(s)] (zero where t < s): adds to dx_s, the direct part of ddt_s, the
    column sums of W (gcol) and its row sums (row mb // BLOCK_L of grow_acc)."""
    # [BL, BP] dy (gated: stored by _chunk_dstate_kernel)
    dy_mc = tl.load(dy_ptr + xoff + (t0 + offs_m)[:, None] * stride_x_t + offs_p[None, :],
                    mask=mask_m[:, None] & (offs_p[None, :] < P), other=0.0).to(dtype)
    # [BL(t), BL(s)]
    if HAS_GRAM:
        gd = _load_gram(cb_ptr, offs_m, offs_k, CHUNK) * dcy
    else:
        # [BL, BN]
        C_m = tl.load(C_ptr + (t0 + offs_m)[:, None] * stride_B_t + offs_n[None, :],
                      mask=mask_m[:, None] & (offs_n[None, :] < N), other=0.0)
        gd = tl.dot(C_m, tl.trans(B_k), input_precision=DOT_PREC) * dcy
    dm = tl.dot(dy_mc, tl.trans(x_k), input_precision=DOT_PREC)
    mm = gd * dt_k[None, :]
    dx_acc += tl.dot(tl.trans(mm.to(dtype)), dy_mc, input_precision=DOT_PREC)
    dmgd = dm * gd
    ddt_acc += tl.sum(dmgd, axis=0)
    w = dmgd * dt_k[None, :]
    gcol += tl.sum(w, axis=0)
    grow_acc += tl.where((offs_blk == mb // BLOCK_L)[:, None], tl.sum(w, axis=1)[None, :], 0.0)
    return dx_acc, ddt_acc, gcol, grow_acc


@triton.jit
def _chunk_bwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, ypre_ptr, dout_ptr, dy_ptr, dS_ptr, cb_ptr,
    dx_ptr, dz_ptr, ddt_ptr, grow_ptr, gcol_ptr, vsum_ptr, dD_ptr,
    T, H, P, N, G, heads_per_group, NC,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    NB: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_GRAM: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Per head: dx, dz, the direct part of ddt, the column and row sums of W (gcol, grow: the
    state-before-the-chunk part of grow comes from _group_dC_kernel) and partial sums of dD.
    x, z, ypre, dout, dy, dx, dz share x's strides; B, C share B's; dt, ddt, grow, gcol share dt's
    strides ([B, T, H]); vsum, dD are [B*H, NC]; with HAS_GRAM, cb is C B^T per chunk and group
    ([B, NC, G, CHUNK, CHUNK] fp32). NB: a power of two >= the blocks per chunk."""
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
    A_h = tl.load(A_ptr + h).to(tl.float32)
    dtype = x_ptr.dtype.element_ty
    cb_ptr += ((b * NC + c) * G + g) * CHUNK * CHUNK

    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    offs_b = tl.arange(0, BLOCK_L)
    offs_blk = tl.arange(0, NB)
    mask_pn = (offs_p[:, None] < P) & (offs_n[None, :] < N)
    soff = b * stride_s_b + c * stride_s_c + h * stride_s_h + offs_p[:, None] * N + offs_n[None, :]
    # [BP, BN] gradient of the state after the chunk
    dS = tl.load(dS_ptr + soff, mask=mask_pn, other=0.0).to(dtype)
    a_total = _chunk_log_decay(dt_ptr, stride_dt_t, t0, T, A_h, CHUNK, BLOCK_L)
    if HAS_D:
        D_h = tl.load(D_ptr + h).to(tl.float32)

    # source blocks s; inner loop over target blocks t >= s. grow_t (row sums of W over s) gathers
    # across source blocks: row mb // BLOCK_L of grow_acc [NB, BL]
    vsum = 0.0
    dD_acc = 0.0
    carry_k = 0.0
    grow_acc = tl.zeros((NB, BLOCK_L), dtype=tl.float32)
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
        ddt_acc = tl.sum(x_k.to(tl.float32) * bds, axis=1) * dec_k
        v = ddt_acc * dt_k
        vsum += tl.sum(v, axis=0)
        gcol = v

        # target blocks t >= s: the diagonal block with direct exponentials under the causal mask,
        # the later ones with exp(acum_t - acum_s) = exp(acum_t - ref) * exp(ref - acum_s), ref the
        # acum of the source block's last position (both factors <= 1, see ssd_fwd's scan): 2 BL
        # exponentials per block pair instead of BL x BL
        causal = offs_b[:, None] >= offs_b[None, :]
        dcy = _masked_decay(acum_k, acum_k, causal)
        dx_acc, ddt_acc, gcol, grow_acc = _bwd_pair(
            dx_acc, ddt_acc, gcol, grow_acc, dcy, x_k, B_k, dt_k, offs_k, mask_k, offs_k, kb, dy_ptr, C_ptr, cb_ptr,
            xoff, t0, P, N, stride_x_t, stride_B_t, offs_p, offs_n, offs_blk, dtype, CHUNK, BLOCK_L, HAS_GRAM, DOT_PREC)
        ref = carry_k + tl.sum(a_k, axis=0)
        col = tl.exp(ref - acum_k)
        carry_m = ref
        for mb in range(kb + BLOCK_L, CHUNK, BLOCK_L):
            offs_m = mb + offs_b
            dt_m, a_m, acum_m, mask_m = _load_dt_block(dt_ptr, stride_dt_t, offs_m, t0, T, CHUNK, A_h, carry_m)
            carry_m += tl.sum(a_m, axis=0)
            dcy = tl.exp(acum_m - ref)[:, None] * col[None, :]
            dx_acc, ddt_acc, gcol, grow_acc = _bwd_pair(
                dx_acc, ddt_acc, gcol, grow_acc, dcy, x_k, B_k, dt_k, offs_k, mask_m, offs_m, mb, dy_ptr, C_ptr, cb_ptr,
                xoff, t0, P, N, stride_x_t, stride_B_t, offs_p, offs_n, offs_blk, dtype, CHUNK, BLOCK_L, HAS_GRAM,
                DOT_PREC)

        # [BL, BP] this block's own dy: the skip D and the gate
        dy_k, dz_k = _load_dy(dout_ptr, z_ptr, ypre_ptr, kx_offs, mask_kx, HAS_Z)
        if HAS_D:
            dx_acc += D_h * dy_k
            dD_acc += tl.sum(tl.sum(dy_k * x_k.to(tl.float32), axis=1), axis=0)
        if HAS_Z:
            tl.store(dz_ptr + kx_offs, dz_k.to(dz_ptr.dtype.element_ty), mask=mask_kx)
        tl.store(dx_ptr + kx_offs, dx_acc.to(dx_ptr.dtype.element_ty), mask=mask_kx)
        k_offs = dtoff + (t0 + offs_k) * stride_dt_t
        tl.store(ddt_ptr + k_offs, ddt_acc, mask=mask_k)
        tl.store(gcol_ptr + k_offs, gcol, mask=mask_k)
        carry_k += tl.sum(a_k, axis=0)
    tl.store(vsum_ptr + bh * NC + c, vsum)
    if HAS_D:
        tl.store(dD_ptr + bh * NC + c, dD_acc)
    pos = offs_blk[:, None] * BLOCK_L + offs_b[None, :]
    tl.store(grow_ptr + dtoff + (t0 + pos) * stride_dt_t, grow_acc, mask=(pos < CHUNK) & (t0 + pos < T))


@triton.jit
def _group_block(acum_ptr, T, H, G, LP, CHUNK: tl.constexpr, BLOCK_L: tl.constexpr):
    """Where a program of the group kernels works: batch b, group g, chunk c at t0, its block of
    positions (first one, all, masks in the chunk / in the chunk and before T) and acum at t0."""
    nb = tl.cdiv(CHUNK, BLOCK_L)
    c = tl.program_id(1) // nb
    first = (tl.program_id(1) % nb) * BLOCK_L
    b = tl.program_id(0) // G
    g = tl.program_id(0) % G
    t0 = c * CHUNK
    offs = first + tl.arange(0, BLOCK_L)
    in_chunk = offs < CHUNK
    return b, g, c, t0, first, offs, in_chunk, in_chunk & (t0 + offs < T), acum_ptr + (b * LP + t0) * H


@triton.jit
def _group_dB_kernel(
    x_ptr, dt_ptr, acum_ptr, C_ptr, dy_ptr, dS_ptr, dG_ptr, dB_ptr,
    T, H, P, N, G, heads_per_group, NC, LP,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    stride_o_b, stride_o_t, stride_o_g,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """dB of one block of source positions s of one chunk and group, summed over the group's heads,
    grid (B*G, NC * blocks per chunk): the chunk state's part sum_h exp(a_total - acum_s) dt_s x_s dS^T
    and the intra-chunk part sum_t dG_ts C_t, with dG_ts = sum_h (dy_t . x_s) exp(acum_t - acum_s)
    dt_s for t >= s (the gradient of C B^T), summed over the heads before its product with C (one
    product per group, not per head) and stored [B, NC, G, CHUNK, CHUNK] fp32 for _group_dC_kernel.
    x, dy share x's strides; C and dB (B's dtype) have theirs; acum [B, LP, H] fp32 contiguous
    (the chunk-local cumulative sum of dt * A, LP = NC * CHUNK)."""
    b, g, c, t0, s0, offs_s, in_s, mask_s, acum_base = _group_block(acum_ptr, T, H, G, LP, CHUNK, BLOCK_L)
    dtype = x_ptr.dtype.element_ty
    offs_b = tl.arange(0, BLOCK_L)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_sp = mask_s[:, None] & (offs_p[None, :] < P)
    # [BL, BN]
    acc = tl.zeros((BLOCK_L, BLOCK_N), dtype=tl.float32)
    for hh in range(0, heads_per_group):
        h = g * heads_per_group + hh
        dt_s = tl.load(dt_ptr + b * stride_dt_b + h * stride_dt_h + (t0 + offs_s) * stride_dt_t, mask=mask_s,
                       other=0.0).to(tl.float32)
        acum_s = tl.load(acum_base + offs_s * H + h, mask=in_s, other=0.0)
        a_total = tl.load(acum_base + (CHUNK - 1) * H + h)
        x_s = tl.load(x_ptr + b * stride_x_b + h * stride_x_h + (t0 + offs_s)[:, None] * stride_x_t + offs_p[None, :],
                      mask=mask_sp, other=0.0)
        # [BP, BN]
        dS = tl.load(dS_ptr + b * stride_s_b + c * stride_s_c + h * stride_s_h + offs_p[:, None] * N + offs_n[None, :],
                     mask=(offs_p[:, None] < P) & (offs_n[None, :] < N), other=0.0).to(dtype)
        acc += tl.dot(x_s, dS, input_precision=DOT_PREC) * (dt_s * tl.exp(a_total - acum_s))[:, None]
    dG_base = dG_ptr + ((b * NC + c) * G + g) * CHUNK * CHUNK
    # the diagonal block, then the later target blocks, whose decays factor through the acum of this
    # source block's last position (as in _chunk_bwd_kernel)
    last = tl.minimum(s0 + BLOCK_L, CHUNK) - 1
    for mb in range(s0, CHUNK, BLOCK_L):
        offs_t = mb + offs_b
        in_t = offs_t < CHUNK
        mask_t = in_t & (t0 + offs_t < T)
        # [BL(t), BL(s)]
        dG = tl.zeros((BLOCK_L, BLOCK_L), dtype=tl.float32)
        for hh in range(0, heads_per_group):
            h = g * heads_per_group + hh
            xh = b * stride_x_b + h * stride_x_h
            dt_s = tl.load(dt_ptr + b * stride_dt_b + h * stride_dt_h + (t0 + offs_s) * stride_dt_t, mask=mask_s,
                           other=0.0).to(tl.float32)
            acum_s = tl.load(acum_base + offs_s * H + h, mask=in_s, other=0.0)
            acum_t = tl.load(acum_base + offs_t * H + h, mask=in_t, other=0.0)
            x_s = tl.load(x_ptr + xh + (t0 + offs_s)[:, None] * stride_x_t + offs_p[None, :], mask=mask_sp, other=0.0)
            dy_t = tl.load(dy_ptr + xh + (t0 + offs_t)[:, None] * stride_x_t + offs_p[None, :],
                           mask=mask_t[:, None] & (offs_p[None, :] < P), other=0.0).to(dtype)
            dm = tl.dot(dy_t, tl.trans(x_s), input_precision=DOT_PREC)
            if mb == s0:
                ok = (offs_t[:, None] >= offs_s[None, :]) & mask_t[:, None] & mask_s[None, :]
                dcy = _masked_decay(acum_t, acum_s, ok) * dt_s[None, :]
            else:
                ref = tl.load(acum_base + last * H + h)
                # rows past the chunk read acum 0, which may lie above ref: their factor is 0
                row = tl.where(in_t, tl.exp(acum_t - ref), 0.0)
                dcy = row[:, None] * (tl.exp(ref - acum_s) * dt_s)[None, :]
            dG += dm * dcy
        tl.store(dG_base + offs_t[:, None] * CHUNK + offs_s[None, :], dG, mask=in_t[:, None] & in_s[None, :])
        # [BL, BN]
        C_t = tl.load(C_ptr + b * stride_B_b + g * stride_B_g + (t0 + offs_t)[:, None] * stride_B_t + offs_n[None, :],
                      mask=mask_t[:, None] & (offs_n[None, :] < N), other=0.0)
        acc += tl.dot(tl.trans(dG.to(dtype)), C_t, input_precision=DOT_PREC)
    tl.store(dB_ptr + b * stride_o_b + g * stride_o_g + (t0 + offs_s)[:, None] * stride_o_t + offs_n[None, :],
             acc.to(dB_ptr.dtype.element_ty), mask=mask_s[:, None] & (offs_n[None, :] < N))


@triton.jit
def _group_dC_kernel(
    acum_ptr, B_ptr, C_ptr, dy_ptr, starts_ptr, dG_ptr, dC_ptr, grow_ptr,
    T, H, P, N, G, heads_per_group, NC, LP,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    stride_o_b, stride_o_t, stride_o_g,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """dC of one block of target positions t of one chunk and group, summed over the group's heads,
    grid (B*G, NC * blocks per chunk): sum_h exp(acum_t) dy_t H_c (the state before the chunk) and
    sum_{s <= t} dG_ts B_s (dG from _group_dB_kernel). Per head, the state part's row sums
    with C_t are the state part of grow, stored to grow ([B, T, H], dt's strides)."""
    b, g, c, t0, m0, offs_t, in_t, mask_t, acum_base = _group_block(acum_ptr, T, H, G, LP, CHUNK, BLOCK_L)
    dtype = dy_ptr.dtype.element_ty
    offs_b = tl.arange(0, BLOCK_L)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_tn = mask_t[:, None] & (offs_n[None, :] < N)
    gb_off = b * stride_B_b + g * stride_B_g
    # [BL, BN]
    C_t = tl.load(C_ptr + gb_off + (t0 + offs_t)[:, None] * stride_B_t + offs_n[None, :], mask=mask_tn,
                  other=0.0).to(tl.float32)
    acc = tl.zeros((BLOCK_L, BLOCK_N), dtype=tl.float32)
    for hh in range(0, heads_per_group):
        h = g * heads_per_group + hh
        acum_t = tl.load(acum_base + offs_t * H + h, mask=in_t, other=0.0)
        dy_t = tl.load(dy_ptr + b * stride_x_b + h * stride_x_h + (t0 + offs_t)[:, None] * stride_x_t + offs_p[None, :],
                       mask=mask_t[:, None] & (offs_p[None, :] < P), other=0.0).to(dtype)
        # [BP, BN] state before the chunk
        start = tl.load(starts_ptr + b * stride_s_b + c * stride_s_c + h * stride_s_h + offs_p[:, None] * N
                        + offs_n[None, :], mask=(offs_p[:, None] < P) & (offs_n[None, :] < N), other=0.0).to(dtype)
        part = tl.dot(dy_t, start, input_precision=DOT_PREC) * tl.exp(acum_t)[:, None]
        acc += part
        tl.store(grow_ptr + b * stride_dt_b + h * stride_dt_h + (t0 + offs_t) * stride_dt_t,
                 tl.sum(part * C_t, axis=1), mask=mask_t)
    dG_base = dG_ptr + ((b * NC + c) * G + g) * CHUNK * CHUNK
    for kb in range(0, m0 + BLOCK_L, BLOCK_L):
        offs_s = kb + offs_b
        in_s = offs_s < CHUNK
        # [BL(t), BL(s)]: zero above the diagonal and past the chunk or T (written so)
        dG = tl.load(dG_base + offs_t[:, None] * CHUNK + offs_s[None, :], mask=in_t[:, None] & in_s[None, :],
                     other=0.0)
        # [BL, BN]
        B_s = tl.load(B_ptr + gb_off + (t0 + offs_s)[:, None] * stride_B_t + offs_n[None, :],
                      mask=(in_s & (t0 + offs_s < T))[:, None] & (offs_n[None, :] < N), other=0.0)
        acc += tl.dot(dG.to(dtype), B_s, input_precision=DOT_PREC)
    tl.store(dC_ptr + b * stride_o_b + g * stride_o_g + (t0 + offs_t)[:, None] * stride_o_t + offs_n[None, :],
             acc.to(dC_ptr.dtype.element_ty), mask=mask_tn)


@triton.jit
def _chunk_heads_tile(T, H, stride_dt_b, stride_dt_t, stride_dt_h,
                      CHUNK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr):
    """Where a program of the per-chunk scalar kernels works, grid (B, NC): one chunk of every head as a
    [BLOCK_C, BLOCK_H] tile (heads side by side). Returns (b, positions t [BC], in the chunk [BC],
    heads [BH], heads present [BH], mask [BC, BH] (in the chunk, before T), offsets [BC, BH] with dt's
    strides)."""
    b = tl.program_id(0)
    offs_c = tl.arange(0, BLOCK_C)
    offs_h = tl.arange(0, BLOCK_H)
    t = tl.program_id(1) * CHUNK + offs_c
    in_chunk = offs_c < CHUNK
    in_h = offs_h < H
    mask = (in_chunk & (t < T))[:, None] & in_h[None, :]
    offs = b * stride_dt_b + t[:, None] * stride_dt_t + offs_h[None, :] * stride_dt_h
    return b, t, in_chunk, offs_h, in_h, mask, offs


@triton.jit
def _chunk_acum_kernel(dt_ptr, A_ptr, acum_ptr, T, H, LP,
                       stride_dt_b, stride_dt_t, stride_dt_h,
                       CHUNK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr):
    """acum [B, LP, H] fp32, LP = NC * CHUNK: the chunk-local cumulative sum of a = dt * A (a = 0 past
    T), grid (B, NC)."""
    b, t, in_chunk, offs_h, in_h, mask, offs = _chunk_heads_tile(T, H, stride_dt_b, stride_dt_t, stride_dt_h,
                                                                 CHUNK, BLOCK_C, BLOCK_H)
    # [BC, BH]
    dt = tl.load(dt_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    A = tl.load(A_ptr + offs_h, mask=in_h, other=0.0).to(tl.float32)
    acum = tl.cumsum(dt * A[None, :], axis=0)
    tl.store(acum_ptr + (b * LP + t)[:, None] * H + offs_h[None, :], acum, mask=in_chunk[:, None] & in_h[None, :])


@triton.jit
def _decay_grad_kernel(grow_ptr, grow_state_ptr, gcol_ptr, terms_ptr, dt_ptr, A_ptr, ddt_ptr, dA_part_ptr,
                       T, H, NC,
                       stride_dt_b, stride_dt_t, stride_dt_h,
                       CHUNK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr):
    """The decay's gradient of one chunk of every head, grid (B, NC): g_t = grow_t + grow_state_t - gcol_t
    (d acum_t), da_l = sum_{t >= l in the chunk} g_t + terms (the chunk-level terms: every a_l enters
    acum_last), then ddt += da * A in place and dA's part sum_l da_l dt_l to dA_part [B, NC, H].
    grow, grow_state, gcol, ddt are [B, T, H] fp32 with dt's strides; terms [B * H, NC] fp32."""
    b, _, _, offs_h, in_h, mask, offs = _chunk_heads_tile(T, H, stride_dt_b, stride_dt_t, stride_dt_h,
                                                          CHUNK, BLOCK_C, BLOCK_H)
    c = tl.program_id(1)
    # [BC, BH]
    g = (tl.load(grow_ptr + offs, mask=mask, other=0.0) + tl.load(grow_state_ptr + offs, mask=mask, other=0.0)
         - tl.load(gcol_ptr + offs, mask=mask, other=0.0))
    terms = tl.load(terms_ptr + (b * H + offs_h) * NC + c, mask=in_h, other=0.0)
    da = tl.cumsum(g, axis=0, reverse=True) + terms[None, :]
    A = tl.load(A_ptr + offs_h, mask=in_h, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(ddt_ptr + offs, tl.load(ddt_ptr + offs, mask=mask, other=0.0) + da * A[None, :], mask=mask)
    tl.store(dA_part_ptr + (b * NC + c) * H + offs_h, tl.sum(tl.where(mask, da * dt, 0.0), axis=0), mask=in_h)


def ssd_bwd(dout, dfinal, x, dt, A, B, C, D, z, y_pre, starts, decay, chunk_size, has_initial, *,
            block_l=None, num_warps=4, use_gram=True, group_block_l=None, group_warps=None):
    """Gradients of the chunked SSD. Inputs as saved by ssd_fwd (contiguous). dfinal may be None.

    Returns (dx, ddt, dA, dB, dC, dD, dz, dinitial) with None for absent D / z / initial state;
    dB, dC are summed over the heads of each group, in B's and C's dtype (accumulated in fp32);
    ddt, dA, dD, dinitial are fp32.
    group_block_l / group_warps: launch parameters of the dB / dC kernels (default: block_l, num_warps).
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
    dy = _empty(like=x) if has_z else dout  # dout * silu(z), stored by the first kernel
    _chunk_dstate_kernel[grid](
        dout, zz, yp, dt, A, C, dstates, dy,
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
    ddt = _empty(bsz, T, H, device=dev, dtype=f32)
    grow = _empty(bsz, T, H, device=dev, dtype=f32)
    grow_state = _empty(bsz, T, H, device=dev, dtype=f32)
    gcol = _empty(bsz, T, H, device=dev, dtype=f32)
    vsum = _empty(bsz * H, NC, device=dev, dtype=f32)
    dD_part = _empty(bsz * H, NC, device=dev, dtype=f32) if D is not None else None
    _chunk_bwd_kernel[grid](
        x, dt, A, B, C, D if D is not None else A, zz, yp, dout, dy, dstates, cb if cb is not None else vsum,
        dx, dz if has_z else dx, ddt, grow, gcol, vsum, dD_part if dD_part is not None else vsum,
        T, H, P, N, G, H // G, NC,
        x.stride(0), x.stride(1), x.stride(2),
        dt.stride(0), dt.stride(1), dt.stride(2),
        B.stride(0), B.stride(1), B.stride(2),
        starts.stride(0), starts.stride(1), starts.stride(2),
        CHUNK=chunk_size, BLOCK_L=BLOCK_L, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N,
        NB=triton.next_power_of_2(triton.cdiv(chunk_size, BLOCK_L)),
        HAS_D=D is not None, HAS_Z=has_z, HAS_GRAM=use_gram, DOT_PREC=prec,
        num_warps=num_warps, num_stages=stages,
    )
    # dB, dC per group (summed over its heads inside the kernels): the chunk-local cumulative decay
    LP = NC * chunk_size
    BLOCK_C, BLOCK_H = triton.next_power_of_2(chunk_size), triton.next_power_of_2(H)
    acum = _empty(bsz, LP, H, device=dev, dtype=f32)
    _chunk_acum_kernel[(bsz, NC)](dt, A, acum, T, H, LP, dt.stride(0), dt.stride(1), dt.stride(2),
                                  CHUNK=chunk_size, BLOCK_C=BLOCK_C, BLOCK_H=BLOCK_H)
    dG = _empty(bsz, NC, G, chunk_size, chunk_size, device=dev, dtype=f32)
    dB = _empty(bsz, T, G, N, device=dev, dtype=B.dtype)
    dC = _empty(bsz, T, G, N, device=dev, dtype=C.dtype)
    GROUP_L, group_stages = _launch_params(x.dtype, chunk_size, group_block_l or BLOCK_L)
    group_grid = (bsz * G, NC * triton.cdiv(chunk_size, GROUP_L))
    group_args = (
        T, H, P, N, G, H // G, NC, LP,
        x.stride(0), x.stride(1), x.stride(2),
        dt.stride(0), dt.stride(1), dt.stride(2),
        B.stride(0), B.stride(1), B.stride(2),
        starts.stride(0), starts.stride(1), starts.stride(2),
        dB.stride(0), dB.stride(1), dB.stride(2),
    )
    group_kw = dict(CHUNK=chunk_size, BLOCK_L=GROUP_L, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N, DOT_PREC=prec,
                    num_warps=group_warps or num_warps, num_stages=group_stages)
    _group_dB_kernel[group_grid](x, dt, acum, C, dy, dstates, dG, dB, *group_args, **group_kw)
    _group_dC_kernel[group_grid](acum, B, C, dy, starts, dG, dC, grow_state, *group_args, **group_kw)
    # the decay's gradient (d acum_t = grow_t - gcol_t, reverse sums in each chunk, the chunk-level
    # terms) into ddt, and dA
    terms = glast.sum(0) + vsum  # [B * H, NC]
    dA_part = _empty(bsz, NC, H, device=dev, dtype=f32)
    _decay_grad_kernel[(bsz, NC)](grow, grow_state, gcol, terms, dt, A, ddt, dA_part, T, H, NC,
                                  dt.stride(0), dt.stride(1), dt.stride(2),
                                  CHUNK=chunk_size, BLOCK_C=BLOCK_C, BLOCK_H=BLOCK_H)
    dA = dA_part.sum((0, 1))
    dD = dD_part.view(bsz, H, NC).sum((0, 2)) if D is not None else None
    return dx, ddt, dA, dB, dC, dD, dz, dinit
