"""Triton backward kernels of the scan-informed sparse attention (FlashAttention-2 style).

With z = scale * q.k + b (b the per-key bias) the logits, P = exp(z - lse) and
delta_i = sum_d dO_id O_id: dV = P^T dO, dP = dO V^T, dS = P * (dP - delta), dQ = scale * dS K,
dK = scale * dS^T Q, db_j = sum_i dS_ij.
Probabilities are recomputed from the forward's log-sum-exp (base 2, +inf on padding rows so
their P is exactly 0). Layouts and the query-tile convention: sparse_attention_fwd.py.

1. `_delta_kernel`: delta [B*H, NC*CHUNK] fp32 (0 on padding rows).
2. `_dq_kernel`, grid (query tiles, B*H): dQ over the tile's local keys then its chunk's
   selected keys (the forward's loop, recomputing P).
3. `_dkv_local_kernel`, grid (key blocks, B*H): dK, dV of the keys of k from the queries whose
   local span holds them: causal, key j is seen by query i iff i0(i) - WINDOW <= j <= i, so a
   key block walks the query tiles from its own position to the last chunk whose span reaches
   back to it: masked tiles (the diagonal), full tiles, masked tiles (the far edge of the span).
4. `_dkv_sel_kernel`, grid (chunk x selected-key block, B*H): dK, dV of a chunk's selected keys
   from that chunk's queries. Gathered layout: stored into dsel_k / dsel_v [B, NC, K, H, D] at
   the entries' slots. Indexed layout: the keys are rows of k, and a key may be selected by many
   chunks, so the contributions are atomically added into fp32 buffers (acc_k, acc_v, acc_b).

Indexed layout, in order: `_mark_rows_kernel` marks the rows of k that some list holds, and
`_zero_marked_rows_kernel` zeroes those rows of the fp32 buffers (only them: ~40% of the rows in
benchmarks/layer_bench.py at 1M; converting whole fp32 copies of dk, dv took 1.8 ms there); the selected
keys' gradients are added into them (step 2 or 4, dk unscaled); then step 3 starts its dk, dv, db
from the marked rows (loaded beside its k, v tiles) and stores every row once, in k's dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from genossa.kernels.sparse_attention_fwd import (
    LOG2E,
    _empty,
    _floordiv,
    _load_bias,
    _load_rows,
    _local_bounds,
    _store_rows,
    dot_prec,
    launch_setting,
    query_rows,
    register_cap,
    sel_strides,
)


@triton.jit
def _delta_kernel(o_ptr, do_ptr, delta_ptr, Tq, H, LP, stride_ob, stride_ot, stride_oh,
                  stride_dob, stride_dot, stride_doh,
                  DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    qi = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_DV)
    ok = qi < Tq
    o = _load_rows(o_ptr + b * stride_ob + h * stride_oh, qi, stride_ot, offs_d, ok, DV, BLOCK_DV, True)
    do = _load_rows(do_ptr + b * stride_dob + h * stride_doh, qi, stride_dot, offs_d, ok, DV, BLOCK_DV, True)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(delta_ptr + bh.to(tl.int64) * LP + qi, delta, mask=qi < LP)


@triton.jit
def _mark_rows_kernel(row_ptr, cnt_ptr, mark_ptr, NC, K, Tk, BLOCK: tl.constexpr):
    """mark[b, r] = 1 for every row r that chunk c's list holds (grid B * NC)."""
    pid = tl.program_id(0)
    b = pid // NC
    cnt = tl.load(cnt_ptr + pid)
    for n0 in range(0, cnt, BLOCK):
        n = n0 + tl.arange(0, BLOCK)
        rows = tl.load(row_ptr + pid.to(tl.int64) * K + n, mask=n < cnt, other=0)
        tl.store(mark_ptr + b.to(tl.int64) * Tk + rows, tl.full([BLOCK], 1, tl.int8), mask=n < cnt)


@triton.jit
def _zero_marked_rows_kernel(mark_ptr, acc_k_ptr, acc_v_ptr, acc_b_ptr, Tk, HDK: tl.constexpr, HDV: tl.constexpr,
                             H: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_HDK: tl.constexpr,
                             BLOCK_HDV: tl.constexpr, BLOCK_H: tl.constexpr):
    """Zero rows (b, t) of the contiguous fp32 buffers acc_k [B, Tk, H, DK], acc_v [B, Tk, H, DV],
    acc_b [B, Tk, H] where mark[b, t] (grid (Tk / BLOCK_T, B)); the rest stay untouched."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row = tl.program_id(1).to(tl.int64) * Tk + t
    marked = tl.load(mark_ptr + row, mask=t < Tk, other=0) != 0
    ck = tl.arange(0, BLOCK_HDK)
    cv = tl.arange(0, BLOCK_HDV)
    ch = tl.arange(0, BLOCK_H)
    tl.store(acc_k_ptr + row[:, None] * HDK + ck[None, :], tl.zeros([BLOCK_T, BLOCK_HDK], tl.float32),
             mask=marked[:, None] & (ck[None, :] < HDK))
    tl.store(acc_v_ptr + row[:, None] * HDV + cv[None, :], tl.zeros([BLOCK_T, BLOCK_HDV], tl.float32),
             mask=marked[:, None] & (cv[None, :] < HDV))
    tl.store(acc_b_ptr + row[:, None] * H + ch[None, :], tl.zeros([BLOCK_T, BLOCK_H], tl.float32),
             mask=marked[:, None] & (ch[None, :] < H))


@triton.jit
def _emit_rows(x, rows, n_ok, base, stride_row, offs_d, INDEXED: tl.constexpr, D: tl.constexpr,
               BLOCK_D: tl.constexpr, TRANS: tl.constexpr):
    """One gradient tile of a chunk's selected keys, x [BN, BLOCK_D] (or, TRANS, [BLOCK_D, BN]):
    stored at the keys' list slots (gathered) or atomically added to their rows of an fp32
    buffer (indexed: rows shared by chunks)."""
    r64 = rows.to(tl.int64)
    # (the head-dim mask only where the head dim was padded to a power of two)
    if TRANS:
        ptrs = base + r64[None, :] * stride_row + offs_d[:, None]
        mask = n_ok[None, :] & (offs_d[:, None] < D) if D < BLOCK_D else n_ok[None, :]
    else:
        ptrs = base + r64[:, None] * stride_row + offs_d[None, :]
        mask = n_ok[:, None] & (offs_d[None, :] < D) if D < BLOCK_D else n_ok[:, None]
    if INDEXED:
        tl.atomic_add(ptrs, x, mask=mask, sem="relaxed")
    else:
        tl.store(ptrs, x.to(base.dtype.element_ty), mask=mask)


@triton.jit
def _emit_bias_grad(db, rows, n_ok, base, stride_row, INDEXED: tl.constexpr):
    """The tile's key-bias gradients db [BN], as _emit_rows."""
    ptrs = base + rows.to(tl.int64) * stride_row
    if INDEXED:
        tl.atomic_add(ptrs, db, mask=n_ok, sem="relaxed")
    else:
        tl.store(ptrs, db, mask=n_ok)


@triton.jit
def _dq_step(dq, q, do, lse2, delta, kt, vt, bias, s_mask, qk_scale, MASK: tl.constexpr, DOT_PREC: tl.constexpr):
    # [BM, BN]
    s = tl.dot(q, tl.trans(kt), input_precision=DOT_PREC) * qk_scale + bias[None, :]
    p = tl.exp2(s - lse2[:, None])
    if MASK:
        p = tl.where(s_mask, p, 0.0)
    dp = tl.dot(do, tl.trans(vt), input_precision=DOT_PREC)
    ds = p * (dp - delta[:, None])
    dq += tl.dot(ds.to(kt.dtype), kt, input_precision=DOT_PREC)
    return dq


@triton.jit
def _dq_local(dq, q, do, lse2, delta, k_base, v_base, kb_base, stride_kt, stride_vt, stride_kbt, lo, hi, k_start,
              q_abs, qk_scale,
              offs_n, offs_dk, offs_dv, MASK: tl.constexpr, CAUSAL: tl.constexpr, DK: tl.constexpr,
              DV: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
              DOT_PREC: tl.constexpr):
    for j0 in range(lo, hi, BLOCK_N):
        ja = j0 + offs_n
        in_range = ja < hi
        kt = _load_rows(k_base, ja - k_start, stride_kt, offs_dk, in_range, DK, BLOCK_DK, MASK)
        vt = _load_rows(v_base, ja - k_start, stride_vt, offs_dv, in_range, DV, BLOCK_DV, MASK)
        bias = _load_bias(kb_base, ja - k_start, stride_kbt, in_range, MASK)
        s_mask = in_range[None, :]
        if CAUSAL:
            s_mask = s_mask & (ja[None, :] <= q_abs[:, None])
        dq = _dq_step(dq, q, do, lse2, delta, kt, vt, bias, s_mask, qk_scale, MASK, DOT_PREC)
    return dq


@triton.jit
def _sel_grads_step(dq, q, do, lse2, delta, kt, vt, bias, rows, n_ok, dk_base, dv_base, db_base, stride_dkr,
                    stride_dvr, stride_dbr, offs_dk, offs_dv, qk_scale, scale, INDEXED: tl.constexpr,
                    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
                    DOT_PREC: tl.constexpr):
    """A chunk's queries' share of a tile of its selected keys: dq += dS K, and the tile's dk, dv,
    db, complete here (the program holds all the chunk's queries) and emitted. dk, dv are formed
    transposed ([D, BN]: Q^T dS and dO^T P have M = D rows, a full tensor-core tile, where dS^T Q
    had BN), dv first so that its accumulator is dead before dP and dS exist (register pressure).
    Rows past cnt were loaded as zeros (k, v, bias): their dS reaches dq through a zero K row, and
    their dk, dv, db are never emitted, so P needs no mask."""
    s = tl.dot(q, tl.trans(kt), input_precision=DOT_PREC) * qk_scale + bias[None, :]
    p = tl.exp2(s - lse2[:, None])
    dvT = tl.dot(tl.trans(do), p.to(do.dtype), input_precision=DOT_PREC)
    _emit_rows(dvT, rows, n_ok, dv_base, stride_dvr, offs_dv, INDEXED, DV, BLOCK_DV, True)
    dp = tl.dot(do, tl.trans(vt), input_precision=DOT_PREC)
    ds = p * (dp - delta[:, None])
    dq += tl.dot(ds.to(kt.dtype), kt, input_precision=DOT_PREC)
    dkT = tl.dot(tl.trans(q), ds.to(q.dtype), input_precision=DOT_PREC)
    if not INDEXED:  # (indexed: the sums are scaled with the local dk, by the local kernel)
        dkT = dkT * scale
    _emit_rows(dkT, rows, n_ok, dk_base, stride_dkr, offs_dk, INDEXED, DK, BLOCK_DK, True)
    _emit_bias_grad(tl.sum(ds, 0), rows, n_ok, db_base, stride_dbr, INDEXED)
    return dq


@triton.jit
def _dq_kernel(
    q_ptr, k_ptr, v_ptr, kb_ptr, sk_ptr, sv_ptr, sb_ptr, row_ptr, cnt_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    dsk_ptr, dsv_ptr, dsb_ptr,
    Tq, Tk, H, NC, K, q_start, k_start, LP, qk_scale, scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    stride_kbb, stride_kbt, stride_kbh,
    stride_skb, stride_skc, stride_skr, stride_skh,
    stride_svb, stride_svc, stride_svr, stride_svh,
    stride_sbb, stride_sbc, stride_sbr, stride_sbh,
    stride_dob, stride_dot, stride_doh,
    stride_dqb, stride_dqt, stride_dqh,
    stride_dskb, stride_dskc, stride_dskr, stride_dskh,
    stride_dsvb, stride_dsvc, stride_dsvr, stride_dsvh,
    stride_dsbb, stride_dsbc, stride_dsbr, stride_dsbh,
    CHUNK: tl.constexpr, WINDOW: tl.constexpr, CAUSAL: tl.constexpr, ROWS: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
    FUSED_SEL: tl.constexpr, INDEXED: tl.constexpr,
):
    t = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    b64 = b.to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    qi = t * ROWS + offs_m
    row_ok = (offs_m < ROWS) & (qi < Tq)
    q_abs = q_start + qi
    # [BM, BDK], [BM, BDV], [BM]
    q = _load_rows(q_ptr + b64 * stride_qb + h * stride_qh, qi, stride_qt, offs_dk, row_ok, DK, BLOCK_DK, True)
    do = _load_rows(do_ptr + b64 * stride_dob + h * stride_doh, qi, stride_dot, offs_dv, row_ok, DV, BLOCK_DV, True)
    lse2 = tl.load(lse_ptr + bh.to(tl.int64) * LP + qi, mask=offs_m < ROWS, other=float("inf"))
    delta = tl.load(delta_ptr + bh.to(tl.int64) * LP + qi, mask=offs_m < ROWS, other=0.0)
    k_base = k_ptr + b64 * stride_kb + h * stride_kh
    v_base = v_ptr + b64 * stride_vb + h * stride_vh
    kb_base = kb_ptr + b64 * stride_kbb + h * stride_kbh
    dq = tl.zeros([BLOCK_M, BLOCK_DK], tl.float32)

    c, lo, mid, hi = _local_bounds(t, q_start, k_start, Tk, ROWS, CHUNK, WINDOW, CAUSAL, BLOCK_N)
    dq = _dq_local(dq, q, do, lse2, delta, k_base, v_base, kb_base, stride_kt, stride_vt, stride_kbt, lo, mid,
                   k_start, q_abs, qk_scale, offs_n, offs_dk, offs_dv, False, CAUSAL, DK, DV, BLOCK_N, BLOCK_DK,
                   BLOCK_DV, DOT_PREC)
    dq = _dq_local(dq, q, do, lse2, delta, k_base, v_base, kb_base, stride_kt, stride_vt, stride_kbt, mid, hi,
                   k_start, q_abs, qk_scale, offs_n, offs_dk, offs_dv, True, CAUSAL, DK, DV, BLOCK_N, BLOCK_DK,
                   BLOCK_DV, DOT_PREC)

    c64 = c.to(tl.int64)
    cnt = tl.load(cnt_ptr + b * NC + c)
    row_base = row_ptr + (b64 * NC + c64) * K
    sk_base = sk_ptr + b64 * stride_skb + c64 * stride_skc + h * stride_skh
    sv_base = sv_ptr + b64 * stride_svb + c64 * stride_svc + h * stride_svh
    dsk_base = dsk_ptr + b64 * stride_dskb + c64 * stride_dskc + h * stride_dskh
    dsv_base = dsv_ptr + b64 * stride_dsvb + c64 * stride_dsvc + h * stride_dsvh
    sb_base = sb_ptr + b64 * stride_sbb + c64 * stride_sbc + h * stride_sbh
    dsb_base = dsb_ptr + b64 * stride_dsbb + c64 * stride_dsbc + h * stride_dsbh
    # the row indices come one tile ahead, in registers: loaded in the tile's own iteration,
    # Triton's pipeliner made every iteration wait for all the gathers in flight (async_wait 0; the
    # dq kernel stalled ~10% there, Nsight Compute, session 10); this way the gathers keep 3 stages
    rows_next = tl.load(row_base + offs_n, mask=offs_n < cnt, other=0)
    for n0 in range(0, cnt, BLOCK_N):
        n = n0 + offs_n
        n_ok = n < cnt
        rows = rows_next
        rows_next = tl.load(row_base + n + BLOCK_N, mask=n + BLOCK_N < cnt, other=0)
        kt = _load_rows(sk_base, rows, stride_skr, offs_dk, n_ok, DK, BLOCK_DK, True)
        vt = _load_rows(sv_base, rows, stride_svr, offs_dv, n_ok, DV, BLOCK_DV, True)
        bias = _load_bias(sb_base, rows, stride_sbr, n_ok, True)
        if FUSED_SEL:
            # the program holds all the chunk's queries: the tile's dk, dv, db are complete here
            dq = _sel_grads_step(dq, q, do, lse2, delta, kt, vt, bias, rows, n_ok, dsk_base, dsv_base, dsb_base,
                                 stride_dskr, stride_dsvr, stride_dsbr, offs_dk, offs_dv, qk_scale, scale, INDEXED,
                                 DK, DV, BLOCK_DK, BLOCK_DV, DOT_PREC)
        else:
            # rows past cnt are zero K, V rows: they add nothing to dq, unmasked
            dq = _dq_step(dq, q, do, lse2, delta, kt, vt, bias, n_ok[None, :], qk_scale, False, DOT_PREC)

    _store_rows(dq_ptr + b64 * stride_dqb + h * stride_dqh, qi, stride_dqt, offs_dk, row_ok, dq * scale, DK, BLOCK_DK)


@triton.jit
def _dkv_step(dk, dv, db, kt, vt, bias, q_base, do_base, lse_base, delta_base, stride_qt, stride_dot, t, Tq,
              qk_scale, ja, q_start, k_end, offs_m, offs_dk, offs_dv,
              MASK: tl.constexpr, LOCAL: tl.constexpr, CAUSAL: tl.constexpr, CHUNK: tl.constexpr,
              WINDOW: tl.constexpr, ROWS: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
              BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr):
    """Contribution of query tile t to dk, dv [BN, D] and db [BN] of key tile kt, vt, bias
    (transposed products)."""
    qi = t * ROWS + offs_m
    row_ok = (offs_m < ROWS) & (qi < Tq)
    q = _load_rows(q_base, qi, stride_qt, offs_dk, row_ok, DK, BLOCK_DK, MASK)
    do = _load_rows(do_base, qi, stride_dot, offs_dv, row_ok, DV, BLOCK_DV, MASK)
    if MASK:
        lse2 = tl.load(lse_base + qi, mask=offs_m < ROWS, other=float("inf"))
        delta = tl.load(delta_base + qi, mask=offs_m < ROWS, other=0.0)
    else:
        lse2 = tl.load(lse_base + qi)
        delta = tl.load(delta_base + qi)
    # [BN, BM]
    sT = tl.dot(kt, tl.trans(q), input_precision=DOT_PREC) * qk_scale + bias[:, None]
    pT = tl.exp2(sT - lse2[None, :])
    if MASK:
        if LOCAL:
            i0 = q_start + ((t * ROWS) // CHUNK) * CHUNK
            ok = (ja[:, None] >= i0 - WINDOW) & (ja[:, None] < k_end)
            if CAUSAL:
                ok = ok & (ja[:, None] <= (q_start + qi)[None, :])
            else:
                ok = ok & (ja[:, None] < i0 + CHUNK + WINDOW)
            pT = tl.where(ok, pT, 0.0)
    dv += tl.dot(pT.to(do.dtype), do, input_precision=DOT_PREC)
    dpT = tl.dot(vt, tl.trans(do), input_precision=DOT_PREC)
    dsT = pT * (dpT - delta[None, :])
    dk += tl.dot(dsT.to(q.dtype), q, input_precision=DOT_PREC)
    db += tl.sum(dsT, 1)
    return dk, dv, db


@triton.jit
def _dkv_local_kernel(
    q_ptr, k_ptr, v_ptr, kb_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, dkb_ptr,
    mark_ptr, acc_k_ptr, acc_v_ptr, acc_b_ptr,
    Tq, Tk, H, NC, q_start, k_start, LP, qk_scale, scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    stride_kbb, stride_kbt, stride_kbh,
    stride_dob, stride_dot, stride_doh,
    stride_dkb, stride_dkt, stride_dkh,
    stride_dvb, stride_dvt, stride_dvh,
    stride_dkbb, stride_dkbt, stride_dkbh,
    CHUNK: tl.constexpr, WINDOW: tl.constexpr, CAUSAL: tl.constexpr, ROWS: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr, ADD_SEL: tl.constexpr,
):
    jt = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    b64 = b.to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    MPC = CHUNK // ROWS
    j = jt * BLOCK_N + offs_n
    key_ok = j < Tk
    k_end = k_start + Tk
    ja = k_start + j
    # [BN, BDK], [BN, BDV]
    kt = _load_rows(k_ptr + b64 * stride_kb + h * stride_kh, j, stride_kt, offs_dk, key_ok, DK, BLOCK_DK, True)
    vt = _load_rows(v_ptr + b64 * stride_vb + h * stride_vh, j, stride_vt, offs_dv, key_ok, DV, BLOCK_DV, True)
    bias = _load_bias(kb_ptr + b64 * stride_kbb + h * stride_kbh, j, stride_kbt, key_ok, True)
    if ADD_SEL:
        # start from the selected keys' sums over the chunks whose lists hold them (marked rows only;
        # contiguous [B, Tk, H, D] and [B, Tk, H] buffers, dk unscaled); loaded beside k, v's tiles
        sel = key_ok & (tl.load(mark_ptr + b64 * Tk + j, mask=key_ok, other=0) != 0)
        row = (b64 * Tk + j) * H + h
        dk = _load_rows(acc_k_ptr, row, DK, offs_dk, sel, DK, BLOCK_DK, True)
        dv = _load_rows(acc_v_ptr, row, DV, offs_dv, sel, DV, BLOCK_DV, True)
        db = tl.load(acc_b_ptr + row, mask=sel, other=0.0)
    else:
        dk = tl.zeros([BLOCK_N, BLOCK_DK], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
        db = tl.zeros([BLOCK_N], tl.float32)

    # query tiles that see some key of the block, split into masked / full / masked runs
    NT = NC * MPC
    ja_lo = k_start + jt * BLOCK_N
    ja_hi = tl.minimum(ja_lo + BLOCK_N, k_end) - 1
    if CAUSAL:
        t_begin = tl.maximum(ja_lo - q_start, 0) // ROWS
        t_end = tl.minimum((_floordiv(ja_hi + WINDOW - q_start, CHUNK) + 1) * MPC, NT)
        t_a = (tl.maximum(ja_hi - q_start, 0) + ROWS - 1) // ROWS
        t_b = (_floordiv(ja_lo + WINDOW - q_start, CHUNK) + 1) * MPC
    else:
        t_begin = tl.maximum(_floordiv(ja_lo - q_start - WINDOW - CHUNK, CHUNK) + 1, 0) * MPC
        t_end = tl.minimum((_floordiv(ja_hi - q_start + WINDOW, CHUNK) + 1) * MPC, NT)
        t_a = (_floordiv(ja_hi - q_start - WINDOW - CHUNK, CHUNK) + 1) * MPC
        t_b = (_floordiv(ja_lo - q_start + WINDOW, CHUNK) + 1) * MPC
    t_end = tl.maximum(t_end, t_begin)
    t_a = tl.minimum(tl.maximum(t_a, t_begin), t_end)
    # full tiles: every row a query (< Tq, ROWS == BLOCK_M) and every key in k
    t_b = tl.minimum(t_b, Tq // ROWS)
    if ROWS < BLOCK_M:
        t_b = t_a
    t_b = tl.where(ja_lo + BLOCK_N > k_end, t_a, t_b)
    t_b = tl.minimum(tl.maximum(t_b, t_a), t_end)

    bhq = bh.to(tl.int64) * LP
    q_base = q_ptr + b64 * stride_qb + h * stride_qh
    do_base = do_ptr + b64 * stride_dob + h * stride_doh
    for t in range(t_begin, t_a):
        dk, dv, db = _dkv_step(dk, dv, db, kt, vt, bias, q_base, do_base, lse_ptr + bhq, delta_ptr + bhq,
                               stride_qt, stride_dot, t, Tq, qk_scale, ja, q_start, k_end, offs_m, offs_dk, offs_dv,
                               True, True, CAUSAL, CHUNK, WINDOW, ROWS, DK, DV, BLOCK_DK, BLOCK_DV, DOT_PREC)
    for t in range(t_a, t_b):
        dk, dv, db = _dkv_step(dk, dv, db, kt, vt, bias, q_base, do_base, lse_ptr + bhq, delta_ptr + bhq,
                               stride_qt, stride_dot, t, Tq, qk_scale, ja, q_start, k_end, offs_m, offs_dk, offs_dv,
                               False, True, CAUSAL, CHUNK, WINDOW, ROWS, DK, DV, BLOCK_DK, BLOCK_DV, DOT_PREC)
    for t in range(t_b, t_end):
        dk, dv, db = _dkv_step(dk, dv, db, kt, vt, bias, q_base, do_base, lse_ptr + bhq, delta_ptr + bhq,
                               stride_qt, stride_dot, t, Tq, qk_scale, ja, q_start, k_end, offs_m, offs_dk, offs_dv,
                               True, True, CAUSAL, CHUNK, WINDOW, ROWS, DK, DV, BLOCK_DK, BLOCK_DV, DOT_PREC)

    _store_rows(dk_ptr + b64 * stride_dkb + h * stride_dkh, j, stride_dkt, offs_dk, key_ok, dk * scale, DK, BLOCK_DK)
    _store_rows(dv_ptr + b64 * stride_dvb + h * stride_dvh, j, stride_dvt, offs_dv, key_ok, dv, DV, BLOCK_DV)
    tl.store(dkb_ptr + b64 * stride_dkbb + h * stride_dkbh + j.to(tl.int64) * stride_dkbt, db, mask=key_ok)


@triton.jit
def _dkv_sel_kernel(
    q_ptr, sk_ptr, sv_ptr, sb_ptr, row_ptr, cnt_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, db_ptr,
    Tq, H, NC, K, NKT, q_start, LP, qk_scale, scale,
    stride_qb, stride_qt, stride_qh,
    stride_skb, stride_skc, stride_skr, stride_skh,
    stride_svb, stride_svc, stride_svr, stride_svh,
    stride_sbb, stride_sbc, stride_sbr, stride_sbh,
    stride_dob, stride_dot, stride_doh,
    stride_dkb, stride_dkc, stride_dkr, stride_dkh,
    stride_dvb, stride_dvc, stride_dvr, stride_dvh,
    stride_dbb, stride_dbc, stride_dbr, stride_dbh,
    CHUNK: tl.constexpr, ROWS: tl.constexpr, INDEXED: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
):
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    c = pid // NKT
    n0 = (pid % NKT) * BLOCK_N
    b = bh // H
    h = bh % H
    b64 = b.to(tl.int64)
    c64 = c.to(tl.int64)
    cnt = tl.load(cnt_ptr + b * NC + c)
    if n0 < cnt:
        MPC = CHUNK // ROWS
        offs_m = tl.arange(0, BLOCK_M)
        offs_n = n0 + tl.arange(0, BLOCK_N)
        offs_dk = tl.arange(0, BLOCK_DK)
        offs_dv = tl.arange(0, BLOCK_DV)
        n_ok = offs_n < cnt
        rows = tl.load(row_ptr + (b64 * NC + c64) * K + offs_n, mask=n_ok, other=0)
        kt = _load_rows(sk_ptr + b64 * stride_skb + c64 * stride_skc + h * stride_skh, rows, stride_skr, offs_dk,
                        n_ok, DK, BLOCK_DK, True)
        vt = _load_rows(sv_ptr + b64 * stride_svb + c64 * stride_svc + h * stride_svh, rows, stride_svr, offs_dv,
                        n_ok, DV, BLOCK_DV, True)
        bias = _load_bias(sb_ptr + b64 * stride_sbb + c64 * stride_sbc + h * stride_sbh, rows, stride_sbr, n_ok, True)
        dk = tl.zeros([BLOCK_N, BLOCK_DK], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
        db = tl.zeros([BLOCK_N], tl.float32)
        bhq = bh.to(tl.int64) * LP
        q_base = q_ptr + b64 * stride_qb + h * stride_qh
        do_base = do_ptr + b64 * stride_dob + h * stride_doh
        # every query of the chunk sees every listed key: only padding rows (P = 0) are masked
        for m in range(0, MPC):
            dk, dv, db = _dkv_step(dk, dv, db, kt, vt, bias, q_base, do_base, lse_ptr + bhq, delta_ptr + bhq,
                                   stride_qt, stride_dot, c * MPC + m, Tq, qk_scale, offs_n, q_start, 0, offs_m, offs_dk, offs_dv,
                               True, False, True, CHUNK, 0, ROWS, DK, DV, BLOCK_DK, BLOCK_DV, DOT_PREC)
        dk_base = dk_ptr + b64 * stride_dkb + c64 * stride_dkc + h * stride_dkh
        dv_base = dv_ptr + b64 * stride_dvb + c64 * stride_dvc + h * stride_dvh
        db_base = db_ptr + b64 * stride_dbb + c64 * stride_dbc + h * stride_dbh
        if not INDEXED:
            dk = dk * scale
        _emit_rows(dk, rows, n_ok, dk_base, stride_dkr, offs_dk, INDEXED, DK, BLOCK_DK, False)
        _emit_rows(dv, rows, n_ok, dv_base, stride_dvr, offs_dv, INDEXED, DV, BLOCK_DV, False)
        _emit_bias_grad(db, rows, n_ok, db_base, stride_dbr, INDEXED)


def sparse_attention_bwd(do, q, k, v, kb, sel_k, sel_v, sel_b, rows, cnt, out, lse, *, chunk_size, window, causal,
                         q_start, k_start, scale, need_sel=True, dq_cfg=(64, 64, 4, 2), dkv_cfg=(64, 64, 4, 2),
                         sel_cfg=(64, 64, 4, 2)):
    """Backward launch (layouts: sparse_attention_fwd). cfg = (BLOCK_M, BLOCK_N, warps, stages[, register cap]).

    Returns dq, dk, dv (dtypes of q, k, v), dkb (fp32) and dsel_k, dsel_v, dsel_b ([B, NC, K, H(, D)],
    zero on unused entries; None for the indexed layout, whose selected-key gradients are in dk,
    dv, dkb, or without need_sel)."""
    bsz, Tq, H, DK = q.shape
    Tk, DV = k.shape[1], v.shape[-1]
    NC, K = rows.shape[1], rows.shape[2]
    LP = NC * chunk_size
    indexed = sel_k is None
    dev = q.device
    BLOCK_DK = max(16, triton.next_power_of_2(DK))
    BLOCK_DV = max(16, triton.next_power_of_2(DV))
    prec = dot_prec(q.dtype)
    common = dict(CHUNK=chunk_size, DK=DK, DV=DV, BLOCK_DK=BLOCK_DK, BLOCK_DV=BLOCK_DV, DOT_PREC=prec)
    sk = sel_strides(sel_k, indexed, k)
    sv = sel_strides(sel_v, indexed, v)
    sb = sel_strides(sel_b, indexed, kb)
    qk_scale = scale * LOG2E

    delta = _empty((bsz * H, LP), dev, torch.float32)
    _delta_kernel[(triton.cdiv(LP, 64), bsz * H)](
        out, do, delta, Tq, H, LP, out.stride(0), out.stride(1), out.stride(2), do.stride(0), do.stride(1),
        do.stride(2), DV=DV, BLOCK_M=64, BLOCK_DV=BLOCK_DV,
    )

    want_sel = (indexed or need_sel) and K > 0 and NC > 0
    dsel_k = dsel_v = dsel_b = None
    add_sel = indexed and want_sel
    mark = acc_k = acc_v = acc_b = q  # (not read without add_sel)
    if add_sel:
        # fp32 sums of the selected keys' gradients over the chunks that list them, zeroed on the
        # listed rows only; the local kernel starts from them (module docstring)
        mark = torch.zeros(bsz, Tk, device=dev, dtype=torch.int8)
        _mark_rows_kernel[(bsz * NC,)](rows, cnt, mark, NC, K, Tk, BLOCK=256)
        acc_k = _empty((bsz, Tk, H, DK), dev, torch.float32)
        acc_v = _empty((bsz, Tk, H, DV), dev, torch.float32)
        acc_b = _empty((bsz, Tk, H), dev, torch.float32)
        _zero_marked_rows_kernel[(triton.cdiv(Tk, 16), bsz)](
            mark, acc_k, acc_v, acc_b, Tk, HDK=H * DK, HDV=H * DV, H=H, BLOCK_T=16,
            BLOCK_HDK=triton.next_power_of_2(H * DK), BLOCK_HDV=triton.next_power_of_2(H * DV),
            BLOCK_H=triton.next_power_of_2(H),
        )
        dsk, dsv, dsb = (sel_strides(None, True, t) for t in (acc_k, acc_v, acc_b))
    elif need_sel and not indexed:  # (zero where no entry is used, and for empty lists)
        dsel_k = torch.zeros(sel_k.shape, device=dev, dtype=sel_k.dtype)
        dsel_v = torch.zeros(sel_v.shape, device=dev, dtype=sel_v.dtype)
        dsel_b = torch.zeros(sel_b.shape, device=dev, dtype=torch.float32)
        dsk, dsv, dsb = (sel_strides(t, False, None) for t in (dsel_k, dsel_v, dsel_b))
    else:
        dsk = dsv = dsb = (q, 0, 0, 0, 0)  # not written (FUSED_SEL off)

    # dq; where one program holds a whole chunk's queries it also forms the selected keys' dk, dv, db
    dq = _empty(q.shape, dev, q.dtype)
    bm, bn, warps, stages, cap = launch_setting(dq_cfg)
    BLOCK_M, ROWS = query_rows(bm, chunk_size)
    fused = want_sel and ROWS == chunk_size
    _dq_kernel[(NC * (chunk_size // ROWS), bsz * H)](
        q, k, v, kb, sk[0], sv[0], sb[0], rows, cnt, do, lse, delta, dq, dsk[0], dsv[0], dsb[0],
        Tq, Tk, H, NC, K, q_start, k_start, LP, qk_scale, scale,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), kb.stride(0), kb.stride(1), kb.stride(2), *sk[1:], *sv[1:], *sb[1:],
        do.stride(0), do.stride(1), do.stride(2), dq.stride(0), dq.stride(1), dq.stride(2),
        *dsk[1:], *dsv[1:], *dsb[1:],
        WINDOW=window, CAUSAL=causal, ROWS=ROWS, BLOCK_M=BLOCK_M, BLOCK_N=bn, FUSED_SEL=fused, INDEXED=indexed,
        num_warps=warps, num_stages=stages, **register_cap(cap), **common,
    )

    if want_sel and not fused:
        bm, bn, warps, stages, cap = launch_setting(sel_cfg)
        BLOCK_M, ROWS = query_rows(bm, chunk_size)
        NKT = triton.cdiv(K, bn)
        _dkv_sel_kernel[(NC * NKT, bsz * H)](
            q, sk[0], sv[0], sb[0], rows, cnt, do, lse, delta, dsk[0], dsv[0], dsb[0],
            Tq, H, NC, K, NKT, q_start, LP, qk_scale, scale,
            q.stride(0), q.stride(1), q.stride(2), *sk[1:], *sv[1:], *sb[1:],
            do.stride(0), do.stride(1), do.stride(2), *dsk[1:], *dsv[1:], *dsb[1:],
            ROWS=ROWS, INDEXED=indexed, BLOCK_M=BLOCK_M, BLOCK_N=bn,
            num_warps=warps, num_stages=stages, **register_cap(cap), **common,
        )

    # local dk, dv, db (plus, indexed, the selected keys' sums), each row stored once in k's / v's dtype
    dk = _empty(k.shape, dev, k.dtype)
    dv = _empty(v.shape, dev, v.dtype)
    dkb = _empty(kb.shape, dev, torch.float32)
    bm, bn, warps, stages, cap = launch_setting(dkv_cfg)
    BLOCK_M, ROWS = query_rows(bm, chunk_size)
    if Tk:
        _dkv_local_kernel[(triton.cdiv(Tk, bn), bsz * H)](
            q, k, v, kb, do, lse, delta, dk, dv, dkb, mark, acc_k, acc_v, acc_b,
            Tq, Tk, H, NC, q_start, k_start, LP, qk_scale, scale,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), kb.stride(0), kb.stride(1), kb.stride(2),
            do.stride(0), do.stride(1), do.stride(2),
            dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2),
            dkb.stride(0), dkb.stride(1), dkb.stride(2),
            WINDOW=window, CAUSAL=causal, ROWS=ROWS, BLOCK_M=BLOCK_M, BLOCK_N=bn, ADD_SEL=add_sel,
            num_warps=warps, num_stages=stages, **register_cap(cap), **common,
        )
    return dq, dk, dv, dkb, dsel_k, dsel_v, dsel_b
