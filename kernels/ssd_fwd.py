"""Triton forward kernels of the chunked Mamba2 SSD scan, with the per-position scan importance.

Maths and shapes: genossa/ops/ssd/naive.py (the reference these kernels equal). Per batch b,
head h (group g = h // (H // G)), chunk c of CHUNK positions, with a_t = dt_t * A and acum the
cumulative sum of a inside the chunk:

1. `_chunk_state_fwd_kernel`, grid (NC, B*H): the chunk's own contribution to the state at its
   end, S_c = sum_l exp(acum_last - acum_l) dt_l x_l B_l^T  [P, N], and the chunk's log decay
   acum_last.
2. `_state_passing_fwd_kernel`, grid (P*N / BLOCK, B*H): the sequential pass over chunks,
   H_{c+1} = exp(acum_last_c) H_c + S_c, overwriting S_c by H_c (the state *before* chunk c)
   in place, and writing the final state H_NC (and, for the scan, a low-precision copy of the
   H_c and, for importance, ||H_c||^2).
3. `_chunk_scan_fwd_kernel`, grid (B*H, NC * CHUNK / BLOCK_L), one block of positions per program:
   y_t = sum_{s<=t in chunk} (C_t . B_s) exp(acum_t - acum_s) dt_s x_s + exp(acum_t) H_c C_t + D x_t,
   optionally times silu(z_t). With IMPORTANCE it also forms, from the same tiles,
   w_t = h_{t-1} B_t (like y_t with B for C, s < t, one step less of decay), and stores the
   per-position terms cross_t = 2 dt_t x_t . w_t and self_t = dt_t^2 |x_t|^2 |B_t|^2.
4. `_importance_fwd_kernel`, grid (B*H, NC): the scalar recurrences of n_t = ||h_t||^2 and
   d_t = ||h_t - h_{t-1}||^2 (naive.py docstring) through the chunk from those terms, started from
   ||H_c||^2: no state is ever stored per position.

Only per-chunk states ([B, NC, H, P, N], fp32) are stored, so memory is linear in T.
Accumulation is fp32; tiles fed to tl.dot are cast to the input dtype (DOT_PREC picks IEEE fp32
dots for fp32 inputs, so fp32 stays exact on GPUs, where tl.dot would otherwise use tf32).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _expm1(a):
    """exp(a) - 1 accurate for tiny |a| (Kahan's trick: (u - 1) * a / log(u), u = exp(a))."""
    u = tl.exp(a)
    um1 = u - 1.0
    safe = (u != 1.0) & (a > -20.0)
    kahan = um1 * a / tl.log(tl.where(safe, u, 2.0))
    return tl.where(u == 1.0, a, tl.where(a > -20.0, kahan, um1))


@triton.jit
def _masked_decay(acum_t, acum_s, ok):
    """[len(acum_t), len(acum_s)] exp(acum_t - acum_s) where ok, else 0: the direct decays of a
    diagonal block (the blocks past it factor through the block's edge instead)."""
    return tl.exp(tl.where(ok, acum_t[:, None] - acum_s[None, :], -float("inf")))


@triton.jit
def _load_dt_block(dt_ptr, stride_dt_t, offs_l, t0, T, CHUNK: tl.constexpr, A_h, carry):
    """dt, a = dt * A and acum (carry + cumsum of a) of one block of positions of a chunk.

    Positions past the chunk or past T read dt = 0 (decay 1, no input), like the reference's padding.
    Returns (dt [BL], a [BL], acum [BL], mask [BL]) in fp32.
    """
    mask = (offs_l < CHUNK) & (t0 + offs_l < T)
    # [BL]
    dt = tl.load(dt_ptr + (t0 + offs_l) * stride_dt_t, mask=mask, other=0.0).to(tl.float32)
    a = dt * A_h
    acum = carry + tl.cumsum(a, axis=0)
    return dt, a, acum, mask


@triton.jit
def _chunk_log_decay(dt_ptr, stride_dt_t, t0, T, A_h, CHUNK: tl.constexpr, BLOCK_L: tl.constexpr):
    """acum_last: the sum of a over the whole chunk."""
    total = 0.0
    for lb in range(0, CHUNK, BLOCK_L):
        offs = lb + tl.arange(0, BLOCK_L)
        mask = (offs < CHUNK) & (t0 + offs < T)
        # [BL]
        dt = tl.load(dt_ptr + (t0 + offs) * stride_dt_t, mask=mask, other=0.0).to(tl.float32)
        total += tl.sum(dt * A_h, axis=0)
    return total


@triton.jit
def _chunk_state_fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, states_ptr, decay_ptr,
    T, H, P, N, heads_per_group, NC,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    bh = tl.program_id(0)
    c = tl.program_id(1)
    b = bh // H
    h = bh % H
    g = h // heads_per_group
    t0 = c * CHUNK
    x_ptr += b * stride_x_b + h * stride_x_h
    dt_ptr += b * stride_dt_b + h * stride_dt_h
    B_ptr += b * stride_B_b + g * stride_B_g
    A_h = tl.load(A_ptr + h).to(tl.float32)

    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    a_total = _chunk_log_decay(dt_ptr, stride_dt_t, t0, T, A_h, CHUNK, BLOCK_L)
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    carry = 0.0
    for lb in range(0, CHUNK, BLOCK_L):
        offs_l = lb + tl.arange(0, BLOCK_L)
        dt, a, acum, mask_l = _load_dt_block(dt_ptr, stride_dt_t, offs_l, t0, T, CHUNK, A_h, carry)
        carry += tl.sum(a, axis=0)
        w = tl.exp(a_total - acum) * dt
        # [BP, BL] x transposed
        xT = tl.load(
            x_ptr + (t0 + offs_l)[None, :] * stride_x_t + offs_p[:, None],
            mask=mask_l[None, :] & (offs_p[:, None] < P), other=0.0,
        )
        # [BL, BN]
        Bl = tl.load(
            B_ptr + (t0 + offs_l)[:, None] * stride_B_t + offs_n[None, :],
            mask=mask_l[:, None] & (offs_n[None, :] < N), other=0.0,
        )
        xw = (xT.to(tl.float32) * w[None, :]).to(Bl.dtype)
        acc += tl.dot(xw, Bl, input_precision=DOT_PREC)
    states_ptr += b * stride_s_b + c * stride_s_c + h * stride_s_h
    tl.store(
        states_ptr + offs_p[:, None] * N + offs_n[None, :], acc,
        mask=(offs_p[:, None] < P) & (offs_n[None, :] < N),
    )
    tl.store(decay_ptr + bh * NC + c, a_total)


@triton.jit
def _row(tile, rows, i):
    """Row i of a [R, BLOCK] tile, exactly (the other rows add 0)."""
    return tl.sum(tl.where((rows == i)[:, None], tile, 0.0), axis=0)


@triton.jit
def _elem(vec, rows, i):
    """Element i of an [R] vector, exactly."""
    return tl.sum(tl.where(rows == i, vec, 0.0), axis=0)


@triton.jit
def _state_passing_fwd_kernel(
    states_ptr, decay_ptr, init_ptr, final_ptr, lowp_ptr, sq_ptr,
    H, PN, NC, BHNC,
    stride_s_b, stride_s_c, stride_s_h,
    HAS_INIT: tl.constexpr, BLOCK: tl.constexpr, GROUP: tl.constexpr,
    HAS_LOWP: tl.constexpr, HAS_SQ: tl.constexpr,
):
    """GROUP chunks' contributions and decays are loaded at once and the chain runs over them in
    registers: the loop waits on memory once per GROUP chunks, not once per chunk (the chain is
    latency-bound: one chunk at a time, NC = 1,024 took 1.4 ms per layer on an H200).
    HAS_LOWP also stores the states before the chunks in lowp's dtype (the scan's copy: half the
    bytes); HAS_SQ stores this program's part of ||state before the chunk||^2 at sq[pid, bh, c]."""
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < PN
    rows = tl.arange(0, GROUP)
    if HAS_INIT:
        # [BLOCK]
        state = tl.load(init_ptr + bh * PN + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BLOCK,), dtype=tl.float32)
    states_ptr += b * stride_s_b + h * stride_s_h
    lowp_ptr += b * stride_s_b + h * stride_s_h  # same layout as states
    for c0 in range(0, NC, GROUP):
        cs = c0 + rows
        rel = cs[:, None] * stride_s_c + offs[None, :]
        ptrs = states_ptr + rel
        tile_mask = (cs < NC)[:, None] & mask[None, :]
        # [GROUP, BLOCK] the chunks' own contributions, replaced by the states before the chunks;
        # chunks past NC read own 0 and decay exp(0) = 1: the state passes through unchanged
        own = tl.load(ptrs, mask=tile_mask, other=0.0)
        decay = tl.exp(tl.load(decay_ptr + bh * NC + cs, mask=cs < NC, other=0.0))
        before = tl.zeros((GROUP, BLOCK), dtype=tl.float32)
        for i in tl.static_range(GROUP):
            before = tl.where((rows == i)[:, None], state[None, :], before)
            state = _elem(decay, rows, i) * state + _row(own, rows, i)
        tl.store(ptrs, before, mask=tile_mask)
        if HAS_LOWP:
            tl.store(lowp_ptr + rel, before.to(lowp_ptr.dtype.element_ty), mask=tile_mask)
        if HAS_SQ:
            tl.store(sq_ptr + pid * BHNC + bh * NC + cs, tl.sum(before * before, axis=1), mask=cs < NC)
    tl.store(final_ptr + bh * PN + offs, state, mask=mask)


@triton.jit
def _chunk_gram_kernel(
    C_ptr, B_ptr, out_ptr,
    T, G, N,
    stride_B_b, stride_B_t, stride_B_g,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """out[b, c, g, t, s] = C_t . B_s inside each chunk (lower block triangle only), fp32.

    Shared by the heads of a group, so the per-head kernels load it instead of recomputing it.
    grid (NC * B * G, CHUNK / BLOCK_L (t), CHUNK / BLOCK_L (s)); C and B share strides.
    """
    cbg = tl.program_id(0)
    mb = tl.program_id(1)
    kb = tl.program_id(2)
    if kb <= mb:
        c = cbg // G  # cbg = (b * NC + c) * G + g is also the output's leading index
        g = cbg % G
        NCt = tl.cdiv(T, CHUNK)
        b = c // NCt
        c = c % NCt
        t0 = c * CHUNK
        offs_n = tl.arange(0, BLOCK_N)
        offs_m = mb * BLOCK_L + tl.arange(0, BLOCK_L)
        offs_k = kb * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_m = (offs_m < CHUNK) & (t0 + offs_m < T)
        mask_k = (offs_k < CHUNK) & (t0 + offs_k < T)
        base = b * stride_B_b + g * stride_B_g
        # [BL, BN]
        C_m = tl.load(
            C_ptr + base + (t0 + offs_m)[:, None] * stride_B_t + offs_n[None, :],
            mask=mask_m[:, None] & (offs_n[None, :] < N), other=0.0,
        )
        # [BL, BN]
        B_k = tl.load(
            B_ptr + base + (t0 + offs_k)[:, None] * stride_B_t + offs_n[None, :],
            mask=mask_k[:, None] & (offs_n[None, :] < N), other=0.0,
        )
        acc = tl.dot(C_m, tl.trans(B_k), input_precision=DOT_PREC)
        tl.store(
            out_ptr + cbg * CHUNK * CHUNK + offs_m[:, None] * CHUNK + offs_k[None, :], acc,
            mask=(offs_m[:, None] < CHUNK) & (offs_k[None, :] < CHUNK),
        )


@triton.jit
def _load_gram(ptr, offs_m, offs_k, CHUNK: tl.constexpr):
    """[BL, BL] tile of a per-chunk Gram matrix (see _chunk_gram_kernel); ptr at its chunk/group."""
    return tl.load(
        ptr + offs_m[:, None] * CHUNK + offs_k[None, :],
        mask=(offs_m[:, None] < CHUNK) & (offs_k[None, :] < CHUNK), other=0.0,
    )


@triton.jit
def _chunk_scan_fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, starts_ptr, cb_ptr, bb_ptr,
    y_ptr, ypre_ptr, cross_ptr, self_ptr,
    T, H, P, N, G, heads_per_group, NC,
    stride_x_b, stride_x_t, stride_x_h,
    stride_dt_b, stride_dt_t, stride_dt_h,
    stride_B_b, stride_B_t, stride_B_g,
    stride_s_b, stride_s_c, stride_s_h,
    CHUNK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, IMPORTANCE: tl.constexpr,
    HAS_GRAM: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """One block of BLOCK_L positions (t) of one chunk and head per program, grid
    (B*H, NC * ceil(CHUNK / BLOCK_L)): y_t, and with IMPORTANCE the per-position terms
    cross_t = 2 dt_t r_t and self_t = dt_t^2 s_t of the norm recurrences (finished by
    _importance_fwd_kernel), r_t = x_t . w_t with w_t = h_{t-1} B_t formed like y_t = h_t C_t.
    x, z, y, ypre share x's strides; B, C share B's; dt, cross, self share dt's.
    With HAS_GRAM, cb / bb are C B^T / B B^T per chunk and group ([B, NC, G, CHUNK, CHUNK], fp32 or the
    scan dtype); starts are the states before the chunks (fp32 or the scan dtype)."""
    bh = tl.program_id(0)
    cm = tl.program_id(1)
    n_blocks = tl.cdiv(CHUNK, BLOCK_L)
    c = cm // n_blocks
    m0 = (cm % n_blocks) * BLOCK_L
    b = bh // H
    h = bh % H
    g = h // heads_per_group
    t0 = c * CHUNK
    xoff = b * stride_x_b + h * stride_x_h
    x_ptr += xoff
    dt_ptr += b * stride_dt_b + h * stride_dt_h
    B_ptr += b * stride_B_b + g * stride_B_g
    C_ptr += b * stride_B_b + g * stride_B_g
    A_h = tl.load(A_ptr + h).to(tl.float32)
    gram_off = ((b * NC + c) * G + g) * CHUNK * CHUNK
    cb_ptr += gram_off
    bb_ptr += gram_off
    starts_ptr += b * stride_s_b + c * stride_s_c + h * stride_s_h

    offs_p = tl.arange(0, BLOCK_P)
    offs_b = tl.arange(0, BLOCK_L)
    offs_m = m0 + offs_b
    carry_m = 0.0  # sum of a over the chunk's positions before this block
    for kb in range(0, m0, BLOCK_L):
        offs_k = kb + offs_b
        mask_k = (offs_k < CHUNK) & (t0 + offs_k < T)
        carry_m += tl.sum(tl.load(dt_ptr + (t0 + offs_k) * stride_dt_t, mask=mask_k, other=0.0).to(tl.float32), axis=0) * A_h
    dt_m, a_m, acum_m, mask_m = _load_dt_block(dt_ptr, stride_dt_t, offs_m, t0, T, CHUNK, A_h, carry_m)
    acum_prev_m = acum_m - a_m

    # the state before the chunk, read out by C_t (and by B_t for importance), BLOCK_K columns
    # of d_state at a time: [BL, BP]
    acc = tl.zeros((BLOCK_L, BLOCK_P), dtype=tl.float32)
    if IMPORTANCE:
        acc_w = tl.zeros((BLOCK_L, BLOCK_P), dtype=tl.float32)
        b_sq = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for nk in range(0, BLOCK_N, BLOCK_K):
        offs_n = nk + tl.arange(0, BLOCK_K)
        mask_mn = mask_m[:, None] & (offs_n[None, :] < N)
        # [BP, BK]
        start = tl.load(
            starts_ptr + offs_p[:, None] * N + offs_n[None, :],
            mask=(offs_p[:, None] < P) & (offs_n[None, :] < N), other=0.0,
        )
        start_c = tl.trans(start.to(x_ptr.dtype.element_ty))
        # [BL, BK]
        C_m = tl.load(C_ptr + (t0 + offs_m)[:, None] * stride_B_t + offs_n[None, :], mask=mask_mn, other=0.0)
        acc += tl.dot(C_m, start_c, input_precision=DOT_PREC)
        if IMPORTANCE:
            B_m = tl.load(B_ptr + (t0 + offs_m)[:, None] * stride_B_t + offs_n[None, :], mask=mask_mn, other=0.0)
            acc_w += tl.dot(B_m, start_c, input_precision=DOT_PREC)
            B_mf = B_m.to(tl.float32)
            b_sq += tl.sum(B_mf * B_mf, axis=1)
    # Decays factor through ref = acum at the position before this block (carry_m): for s before
    # the block and t in it, exp(acum_t - acum_s) = exp(acum_t - ref) * exp(ref - acum_s), both
    # factors <= 1 (no overflow; where one underflows, the exact value is below it too). So the
    # blocks before the diagonal need BL exponentials (weights of x's rows) instead of BL x BL,
    # and no causal mask; the rows' factors exp(acum_t - ref) for y and exp(acum_{t-1} - ref) for
    # w (acum_{t-1} <= ref as well) come once, after them. The state's exp(acum_t) splits alike.
    ref = carry_m
    acc = acc * tl.exp(ref)
    if IMPORTANCE:
        acc_w = acc_w * tl.exp(ref)
    if not HAS_GRAM:
        offs_nf = tl.arange(0, BLOCK_N)
        mask_mn = mask_m[:, None] & (offs_nf[None, :] < N)
        # [BL, BN]
        C_full = tl.load(C_ptr + (t0 + offs_m)[:, None] * stride_B_t + offs_nf[None, :], mask=mask_mn, other=0.0)
        B_full = tl.load(B_ptr + (t0 + offs_m)[:, None] * stride_B_t + offs_nf[None, :], mask=mask_mn, other=0.0)

    carry_k = 0.0
    for kb in range(0, m0, BLOCK_L):
        offs_k = kb + offs_b
        dt_k, a_k, acum_k, mask_k = _load_dt_block(dt_ptr, stride_dt_t, offs_k, t0, T, CHUNK, A_h, carry_k)
        carry_k += tl.sum(a_k, axis=0)
        # [BL, BP]
        x_k = tl.load(
            x_ptr + (t0 + offs_k)[:, None] * stride_x_t + offs_p[None, :],
            mask=mask_k[:, None] & (offs_p[None, :] < P), other=0.0,
        )
        # x_s exp(ref - acum_s) dt_s, shared by y's product and w's
        xw = (x_k.to(tl.float32) * (tl.exp(ref - acum_k) * dt_k)[:, None]).to(x_k.dtype)
        if HAS_GRAM:
            cb = _load_gram(cb_ptr, offs_m, offs_k, CHUNK)
        else:
            # [BL, BN]
            B_k = tl.load(
                B_ptr + (t0 + offs_k)[:, None] * stride_B_t + offs_nf[None, :],
                mask=mask_k[:, None] & (offs_nf[None, :] < N), other=0.0,
            )
            cb = tl.dot(C_full, tl.trans(B_k), input_precision=DOT_PREC)
        acc += tl.dot(cb.to(x_k.dtype), xw, input_precision=DOT_PREC)
        if IMPORTANCE:
            # w_t += sum_{s<t} (B_t . B_s) exp(acum_{t-1} - acum_s) dt_s x_s
            if HAS_GRAM:
                bb = _load_gram(bb_ptr, offs_m, offs_k, CHUNK)
            else:
                bb = tl.dot(B_full, tl.trans(B_k), input_precision=DOT_PREC)
            acc_w += tl.dot(bb.to(x_k.dtype), xw, input_precision=DOT_PREC)
    acc = acc * tl.exp(acum_m - ref)[:, None]
    if IMPORTANCE:
        acc_w = acc_w * tl.exp(acum_prev_m - ref)[:, None]

    # the diagonal block (s and t both in it): direct exponentials under the causal masks
    # [BL, BP]
    x_d = tl.load(
        x_ptr + (t0 + offs_m)[:, None] * stride_x_t + offs_p[None, :],
        mask=mask_m[:, None] & (offs_p[None, :] < P), other=0.0,
    )
    causal = offs_b[:, None] >= offs_b[None, :]
    # [BL(t), BL(s)]
    decay = _masked_decay(acum_m, acum_m, causal) * dt_m[None, :]
    if HAS_GRAM:
        cb = _load_gram(cb_ptr, offs_m, offs_m, CHUNK)
    else:
        cb = tl.dot(C_full, tl.trans(B_full), input_precision=DOT_PREC)
    acc += tl.dot((cb * decay).to(x_d.dtype), x_d, input_precision=DOT_PREC)
    if IMPORTANCE:
        strict = offs_b[:, None] > offs_b[None, :]
        decay_prev = _masked_decay(acum_prev_m, acum_m, strict) * dt_m[None, :]
        if HAS_GRAM:
            bb = _load_gram(bb_ptr, offs_m, offs_m, CHUNK)
        else:
            bb = tl.dot(B_full, tl.trans(B_full), input_precision=DOT_PREC)
        acc_w += tl.dot((bb * decay_prev).to(x_d.dtype), x_d, input_precision=DOT_PREC)

    x_m = x_d.to(tl.float32)
    if HAS_D:
        acc += tl.load(D_ptr + h).to(tl.float32) * x_m
    out_offs = xoff + (t0 + offs_m)[:, None] * stride_x_t + offs_p[None, :]
    mask_out = mask_m[:, None] & (offs_p[None, :] < P)
    if HAS_Z:
        tl.store(ypre_ptr + out_offs, acc.to(ypre_ptr.dtype.element_ty), mask=mask_out)
        # [BL, BP]
        zz = tl.load(z_ptr + out_offs, mask=mask_out, other=0.0).to(tl.float32)
        acc = acc * zz * tl.sigmoid(zz)
    tl.store(y_ptr + out_offs, acc.to(y_ptr.dtype.element_ty), mask=mask_out)

    if IMPORTANCE:
        r = tl.sum(x_m * acc_w, axis=1)
        s = tl.sum(x_m * x_m, axis=1) * b_sq
        imp_offs = b * stride_dt_b + h * stride_dt_h + (t0 + offs_m) * stride_dt_t
        tl.store(cross_ptr + imp_offs, 2.0 * dt_m * r, mask=mask_m)
        tl.store(self_ptr + imp_offs, dt_m * dt_m * s, mask=mask_m)


@triton.jit
def _linear_step(a1, b1, a2, b2):
    """Composition of v -> a1 v + b1, then v -> a2 v + b2 (tl.associative_scan's combine)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _importance_fwd_kernel(
    dt_ptr, A_ptr, nstart_ptr, norm_ptr, change_ptr,
    T, H, NC,
    stride_dt_b, stride_dt_t, stride_dt_h,
    CHUNK: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """norm_t = sqrt(n_t) and change_t = sqrt(d_t) of one chunk and head, grid (B*H, NC), from the
    per-position terms the scan kernel left in norm (cross_t = 2 dt_t r_t) and change
    (self_t = dt_t^2 s_t), overwritten in place, and nstart = ||state before the chunk||^2:
    n_t = exp(2 a_t) n_{t-1} + u_t with u_t = exp(a_t) cross_t + self_t, and
    d_t = expm1(a_t)^2 n_{t-1} + expm1(a_t) cross_t + self_t (naive.py's docstring).
    n_t and n_{t-1} are two associative scans of that linear recurrence over the chunk (the
    second on the inputs shifted by one, started from nstart): O(1) work per position."""
    bh = tl.program_id(0)
    c = tl.program_id(1)
    b = bh // H
    h = bh % H
    t0 = c * CHUNK
    A_h = tl.load(A_ptr + h).to(tl.float32)
    n0 = tl.load(nstart_ptr + bh * NC + c)
    offs = tl.arange(0, BLOCK_C)
    base = b * stride_dt_b + h * stride_dt_h
    mask = (offs < CHUNK) & (t0 + offs < T)
    # [BC] positions past the chunk or T: a = 0, no input, so the scans pass them through
    a = tl.load(dt_ptr + base + (t0 + offs) * stride_dt_t, mask=mask, other=0.0).to(tl.float32) * A_h
    cross = tl.load(norm_ptr + base + (t0 + offs) * stride_dt_t, mask=mask, other=0.0)
    own = tl.load(change_ptr + base + (t0 + offs) * stride_dt_t, mask=mask, other=0.0)
    decay = tl.exp(2.0 * a)
    u = tl.exp(a) * cross + own
    first = offs == 0
    # n_t: the first step starts from n0 (decay it into the first input)
    _, n = tl.associative_scan((decay, tl.where(first, decay * n0 + u, u)), 0, _linear_step)
    # n_{t-1}: the same recurrence one step behind, n_{-1} = n0
    prev = mask & (offs > 0)
    a_p = tl.load(dt_ptr + base + (t0 + offs - 1) * stride_dt_t, mask=prev, other=0.0).to(tl.float32) * A_h
    cross_p = tl.load(norm_ptr + base + (t0 + offs - 1) * stride_dt_t, mask=prev, other=0.0)
    own_p = tl.load(change_ptr + base + (t0 + offs - 1) * stride_dt_t, mask=prev, other=0.0)
    u_p = tl.exp(a_p) * cross_p + own_p
    _, n_prev = tl.associative_scan((tl.exp(2.0 * a_p), tl.where(first, n0, u_p)), 0, _linear_step)
    am1 = _expm1(a)
    d = am1 * am1 * n_prev + am1 * cross + own
    # every program reads its own chunk's inputs before writing: the chunk's loads above are done
    tl.store(norm_ptr + base + (t0 + offs) * stride_dt_t, tl.sqrt(tl.maximum(n, 0.0)), mask=mask)
    tl.store(change_ptr + base + (t0 + offs) * stride_dt_t, tl.sqrt(tl.maximum(d, 0.0)), mask=mask)


POISON_OUTPUTS = False
"""Tests set this so every buffer the launchers allocate starts as NaN: an element a kernel
forgets to write then fails the comparison instead of passing by luck."""


def _empty(*shape, like=None, device=None, dtype=None):
    """torch.empty (or NaN-filled with POISON_OUTPUTS) shaped `shape` or like `like`."""
    if like is not None:
        shape, device, dtype = like.shape, like.device, dtype or like.dtype
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    return torch.empty(shape, device=device, dtype=dtype)


def _launch_params(dtype, chunk_size, block_l):
    """(positions per block, pipeline stages) of the chunk kernels. fp32 tiles are twice as
    large: the backward kernel at 64 positions and 3 stages asked an H100 for 246 KB of shared
    memory (228 KB exist), so fp32 takes at most 32 positions and 1 stage."""
    BLOCK_L = block_l or min(64, max(16, triton.next_power_of_2(chunk_size)))
    if dtype == torch.float32:
        return min(BLOCK_L, 32), 1
    return BLOCK_L, 3


def _dot_prec(dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def chunk_gram(C, B, chunk_size, *, block_l=64, dtype=torch.float32):
    """[B, NC, G, CHUNK, CHUNK] (fp32 by default): C_t . B_s for t, s in the same chunk (blocks
    above the diagonal are left unwritten: no kernel reads them)."""
    bsz, T, G, N = B.shape
    NC = triton.cdiv(T, chunk_size)
    BLOCK_L = min(block_l, max(16, triton.next_power_of_2(chunk_size)))
    if B.dtype == torch.float32:
        BLOCK_L = min(BLOCK_L, 32)
    out = _empty(bsz, NC, G, chunk_size, chunk_size, device=B.device, dtype=dtype)
    nb = triton.cdiv(chunk_size, BLOCK_L)
    _chunk_gram_kernel[(NC * bsz * G, nb, nb)](
        C, B, out, T, G, N, B.stride(0), B.stride(1), B.stride(2),
        CHUNK=chunk_size, BLOCK_L=BLOCK_L, BLOCK_N=max(16, triton.next_power_of_2(N)),
        DOT_PREC=_dot_prec(B.dtype), num_warps=4,
    )
    return out


STATE_PASS_GROUP = 8
"""Chunks per memory round trip of the sequential state-passing kernels (forward and backward)."""


def state_pass_block(PN):
    """Elements of the state per program of the sequential state-passing kernels: small, so
    that many programs hide the latency of their chain of NC dependent steps (1024 left
    only 128 programs at B=1, H=16 and took 3.1 ms at n=128k on an H100)."""
    return min(64, triton.next_power_of_2(PN))


def ssd_fwd(x, dt, A, B, C, D, z, chunk_size, initial_state, return_importance, *,
            block_l=None, num_warps=4, use_gram=True, scan_dtype=None):
    """Chunked SSD forward. All tensors contiguous, on one device; shapes as in naive.py.
    use_gram: C B^T (and B B^T for importance) once per chunk and group, read by every head
    of the group, rather than recomputed per head.
    scan_dtype: the dtype of the chunk-start states and Gram matrices the chunk scan reads (a copy
    of the fp32 states, which stay for the backward); None: fp32. The scan casts both to x's
    dtype before its products anyway, so x's dtype halves their bytes at the cost of one more
    rounding (C B^T, B B^T rounded before the decay, not after). Not for fp16: its range is small.

    Returns (y [B,T,H,P] x.dtype, y_pre (pre-gate output, only with z, else None),
    starts [B,NC,H,P,N] fp32 (state before each chunk), final [B,H,P,N] fp32,
    norm, change ([B,T,H] fp32, or None)).
    """
    bsz, T, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    NC = triton.cdiv(T, chunk_size)
    BLOCK_L, stages = _launch_params(x.dtype, chunk_size, block_l)
    BLOCK_P = max(16, triton.next_power_of_2(P))
    BLOCK_N = max(16, triton.next_power_of_2(N))
    prec = _dot_prec(x.dtype)
    dev = x.device
    states = _empty(bsz, NC, H, P, N, device=dev, dtype=torch.float32)
    decay = _empty(bsz, H, NC, device=dev, dtype=torch.float32)
    grid = (bsz * H, NC)  # heads of one chunk side by side: they share B and C tiles in L2
    _chunk_state_fwd_kernel[grid](
        x, dt, A, B, states, decay,
        T, H, P, N, H // G, NC,
        x.stride(0), x.stride(1), x.stride(2),
        dt.stride(0), dt.stride(1), dt.stride(2),
        B.stride(0), B.stride(1), B.stride(2),
        states.stride(0), states.stride(1), states.stride(2),
        CHUNK=chunk_size, BLOCK_L=BLOCK_L, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N, DOT_PREC=prec,
        num_warps=num_warps, num_stages=stages,
    )
    final = _empty(bsz, H, P, N, device=dev, dtype=torch.float32)
    PN = P * N
    BLOCK = state_pass_block(PN)
    n_prog = triton.cdiv(PN, BLOCK)
    init = initial_state if initial_state is not None else final
    lowp = scan_dtype not in (None, torch.float32)
    scan_states = _empty(like=states, dtype=scan_dtype) if lowp else states
    # ||state before each chunk||^2 for the importance, from the fp32 states: parts per program,
    # summed in a fixed order (deterministic)
    start_sq = _empty(n_prog, bsz * H, NC, device=dev, dtype=torch.float32) if return_importance else None
    _state_passing_fwd_kernel[(n_prog, bsz * H)](
        states, decay, init, final, scan_states, start_sq if start_sq is not None else decay,
        H, PN, NC, bsz * H * NC,
        states.stride(0), states.stride(1), states.stride(2),
        HAS_INIT=initial_state is not None, BLOCK=BLOCK, GROUP=STATE_PASS_GROUP,
        HAS_LOWP=lowp, HAS_SQ=return_importance, num_warps=1,
    )
    cb = bb = None
    if use_gram:
        gram_dtype = scan_dtype or torch.float32
        cb = chunk_gram(C, B, chunk_size, block_l=BLOCK_L, dtype=gram_dtype)
        bb = chunk_gram(B, B, chunk_size, block_l=BLOCK_L, dtype=gram_dtype) if return_importance else None
    y = _empty(like=x)
    y_pre = _empty(like=x) if z is not None else None
    if return_importance:
        norm = _empty(bsz, T, H, device=dev, dtype=torch.float32)
        change = _empty(bsz, T, H, device=dev, dtype=torch.float32)
        nstart = start_sq.sum(0)
    else:
        norm = change = nstart = None
    _chunk_scan_fwd_kernel[(bsz * H, NC * triton.cdiv(chunk_size, BLOCK_L))](
        x, dt, A, B, C, D if D is not None else A, z if z is not None else x, scan_states,
        cb if cb is not None else decay, bb if bb is not None else decay,
        y, y_pre if y_pre is not None else y, norm if norm is not None else decay,
        change if change is not None else decay,
        T, H, P, N, G, H // G, NC,
        x.stride(0), x.stride(1), x.stride(2),
        dt.stride(0), dt.stride(1), dt.stride(2),
        B.stride(0), B.stride(1), B.stride(2),
        states.stride(0), states.stride(1), states.stride(2),
        CHUNK=chunk_size, BLOCK_L=BLOCK_L, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N, BLOCK_K=min(BLOCK_N, 64),
        HAS_D=D is not None, HAS_Z=z is not None, IMPORTANCE=return_importance, HAS_GRAM=use_gram,
        DOT_PREC=prec, num_warps=num_warps, num_stages=stages,
    )
    if return_importance:
        _importance_fwd_kernel[grid](
            dt, A, nstart, norm, change, T, H, NC,
            dt.stride(0), dt.stride(1), dt.stride(2),
            CHUNK=chunk_size, BLOCK_C=triton.next_power_of_2(chunk_size), num_warps=4,
        )
    return y, y_pre, states, final, norm, change, decay
