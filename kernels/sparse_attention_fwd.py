"""Triton forward kernel of the scan-informed sparse attention, and shared helpers.

Maths and shapes: genossa/ops/sparse_attention/naive.py (the reference this kernel equals). The
query chunk starting at absolute position i0 attends to

* its local span, keys [i0 - WINDOW, i] for query i (causal: a staircase on the diagonal) or
  [i0 - WINDOW, i0 + CHUNK + WINDOW) (bidirectional), read straight from k, v;
* its selected keys, a list shared by all the chunk's queries, read by row: row r of chunk c is
  at `sel + b*stride_b + c*stride_c + h*stride_h + r*stride_r`. For the gathered layout
  (sel_k [B, NC, K, H, D]) r is the slot of the list; for the indexed layout the launcher passes
  k itself with stride_c = 0 and r = the key's index in k, so no gathered copy exists.
  Each key also has a bias b_j (fp32, the scan bias of bias.py; zeros without one), read
  the same way: logit_ij = scale * <q_i, k_j> + b_j.
  The launcher compacts each chunk's list to the `cnt` usable entries (valid, outside the local
  span, not after the chunk's queries, first of repeats), so the kernel needs no per-key test
  beyond r < cnt.

Since the selected set is shared by the chunk, a program of ROWS queries (one tile of one chunk)
runs a dense FlashAttention over (its local keys) then (its selected keys): an online softmax
in base 2, fp32 accumulators, and stores out and the log-sum-exp (base 2, +inf for padding
rows, which makes every padding probability exactly 0 in the backward kernels).

Query tiles: tile t holds query indices [t*ROWS, t*ROWS + ROWS) of chunk (t*ROWS) // CHUNK,
ROWS = min(BLOCK_M, CHUNK), CHUNK % ROWS == 0 (BLOCK_M > CHUNK leaves rows >= CHUNK masked).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _floordiv(a, b: tl.constexpr):
    """floor(a / b) for b > 0 and any sign of a (integer division truncates on GPUs)."""
    return tl.where(a >= 0, a // b, -((b - 1 - a) // b))


@triton.jit
def _load_rows(base, rows, stride_row, offs_d, row_mask, D: tl.constexpr, BLOCK_D: tl.constexpr,
               ROW_MASK: tl.constexpr):
    """[len(rows), BLOCK_D] tile of rows `rows` (int) of a row-major matrix; zeros where masked."""
    ptrs = base + rows.to(tl.int64)[:, None] * stride_row + offs_d[None, :]
    if ROW_MASK:
        if D == BLOCK_D:
            x = tl.load(ptrs, mask=row_mask[:, None], other=0.0)
        else:
            x = tl.load(ptrs, mask=row_mask[:, None] & (offs_d[None, :] < D), other=0.0)
    else:
        if D == BLOCK_D:
            x = tl.load(ptrs)
        else:
            x = tl.load(ptrs, mask=offs_d[None, :] < D, other=0.0)
    return x


@triton.jit
def _store_rows(base, rows, stride_row, offs_d, row_mask, x, D: tl.constexpr, BLOCK_D: tl.constexpr):
    ptrs = base + rows.to(tl.int64)[:, None] * stride_row + offs_d[None, :]
    if D == BLOCK_D:
        tl.store(ptrs, x.to(base.dtype.element_ty), mask=row_mask[:, None])
    else:
        tl.store(ptrs, x.to(base.dtype.element_ty), mask=row_mask[:, None] & (offs_d[None, :] < D))


@triton.jit
def _load_bias(base, rows, stride_row, row_mask, ROW_MASK: tl.constexpr, OTHER: tl.constexpr = 0.0):
    """[len(rows)] fp32 key biases in base 2 (times log2 e); OTHER where masked."""
    ptrs = base + rows.to(tl.int64) * stride_row
    if ROW_MASK:
        b = tl.load(ptrs, mask=row_mask, other=OTHER)
    else:
        b = tl.load(ptrs)
    return b.to(tl.float32) * 1.4426950408889634


@triton.jit
def _softmax_step(acc, l_i, m_i, q, kt, vt, bias, s_mask, qk_scale, MASK: tl.constexpr, DOT_PREC: tl.constexpr):
    """One key tile of the online softmax (base 2). q [BM, BDK], kt [BN, BDK], vt [BN, BDV],
    bias [BN] (base 2)."""
    # [BM, BN]
    s = tl.dot(q, tl.trans(kt), input_precision=DOT_PREC) * qk_scale + bias[None, :]
    if MASK:
        s = tl.where(s_mask, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))  # m_i starts finite: m_new is finite
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt, input_precision=DOT_PREC)
    return acc, l_i, m_new


@triton.jit
def _fwd_local(acc, l_i, m_i, q, k_base, v_base, kb_base, stride_kt, stride_vt, stride_kbt, lo, hi, k_start, q_abs,
               qk_scale, offs_n, offs_dk, offs_dv,
               MASK: tl.constexpr, CAUSAL: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
               DOT_PREC: tl.constexpr):
    """Local keys at absolute positions [lo, hi); MASK: bounds and the causal staircase."""
    for j0 in range(lo, hi, BLOCK_N):
        ja = j0 + offs_n  # [BN] absolute key positions
        in_range = ja < hi
        kt = _load_rows(k_base, ja - k_start, stride_kt, offs_dk, in_range, DK, BLOCK_DK, MASK)
        vt = _load_rows(v_base, ja - k_start, stride_vt, offs_dv, in_range, DV, BLOCK_DV, MASK)
        bias = _load_bias(kb_base, ja - k_start, stride_kbt, in_range, MASK)
        s_mask = in_range[None, :]
        if CAUSAL:
            s_mask = s_mask & (ja[None, :] <= q_abs[:, None])
        acc, l_i, m_i = _softmax_step(acc, l_i, m_i, q, kt, vt, bias, s_mask, qk_scale, MASK, DOT_PREC)
    return acc, l_i, m_i


@triton.jit
def _local_bounds(t, q_start, k_start, Tk, ROWS: tl.constexpr, CHUNK: tl.constexpr,
                  WINDOW: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr):
    """Local keys of query tile t: [lo, mid) seen by every query of the tile, [mid, hi) masked."""
    c = (t * ROWS) // CHUNK
    i0 = q_start + c * CHUNK
    k_end = k_start + Tk
    lo = tl.maximum(i0 - WINDOW, k_start)
    if CAUSAL:
        hi = tl.minimum(q_start + t * ROWS + ROWS, k_end)
        full_hi = tl.minimum(q_start + t * ROWS + 1, k_end)
    else:
        hi = tl.minimum(i0 + CHUNK + WINDOW, k_end)
        full_hi = hi
    mid = lo + (tl.maximum(full_hi - lo, 0) // BLOCK_N) * BLOCK_N
    return c, lo, mid, hi


@triton.jit
def _sparse_attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, kb_ptr, sk_ptr, sv_ptr, sb_ptr, row_ptr, cnt_ptr, o_ptr, lse_ptr,
    Tq, Tk, H, NC, K, q_start, k_start, LP, qk_scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    stride_kbb, stride_kbt, stride_kbh,
    stride_skb, stride_skc, stride_skr, stride_skh,
    stride_svb, stride_svc, stride_svr, stride_svh,
    stride_sbb, stride_sbc, stride_sbr, stride_sbh,
    stride_ob, stride_ot, stride_oh,
    CHUNK: tl.constexpr, WINDOW: tl.constexpr, CAUSAL: tl.constexpr, ROWS: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
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
    qi = t * ROWS + offs_m  # [BM] query indices
    row_ok = (offs_m < ROWS) & (qi < Tq)
    q_abs = q_start + qi

    # [BM, BDK]
    q = _load_rows(q_ptr + b64 * stride_qb + h * stride_qh, qi, stride_qt, offs_dk, row_ok, DK, BLOCK_DK, True)
    k_base = k_ptr + b64 * stride_kb + h * stride_kh
    v_base = v_ptr + b64 * stride_vb + h * stride_vh
    kb_base = kb_ptr + b64 * stride_kbb + h * stride_kbh
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)

    c, lo, mid, hi = _local_bounds(t, q_start, k_start, Tk, ROWS, CHUNK, WINDOW, CAUSAL, BLOCK_N)
    acc, l_i, m_i = _fwd_local(acc, l_i, m_i, q, k_base, v_base, kb_base, stride_kt, stride_vt, stride_kbt, lo, mid,
                               k_start, q_abs, qk_scale, offs_n, offs_dk, offs_dv, False, CAUSAL, DK, DV, BLOCK_N,
                               BLOCK_DK, BLOCK_DV, DOT_PREC)
    acc, l_i, m_i = _fwd_local(acc, l_i, m_i, q, k_base, v_base, kb_base, stride_kt, stride_vt, stride_kbt, mid, hi,
                               k_start, q_abs, qk_scale, offs_n, offs_dk, offs_dv, True, CAUSAL, DK, DV, BLOCK_N,
                               BLOCK_DK, BLOCK_DV, DOT_PREC)

    # selected keys of chunk c: the first cnt entries of its compacted list
    c64 = c.to(tl.int64)
    cnt = tl.load(cnt_ptr + b * NC + c)
    row_base = row_ptr + (b64 * NC + c64) * K
    sk_base = sk_ptr + b64 * stride_skb + c64 * stride_skc + h * stride_skh
    sv_base = sv_ptr + b64 * stride_svb + c64 * stride_svc + h * stride_svh
    sb_base = sb_ptr + b64 * stride_sbb + c64 * stride_sbc + h * stride_sbh
    # (loading the row indices a tile ahead, as the dq kernel does, lets the gathers pipeline deeper
    # but took this kernel to 255 registers with spills: 9% slower, session 10; with 32-key tiles or 8
    # warps it fits (128-231 registers, no spills) but every such tile was 9-50% slower, session 11)
    for n0 in range(0, cnt, BLOCK_N):
        n = n0 + offs_n
        n_ok = n < cnt
        rows = tl.load(row_base + n, mask=n_ok, other=0)
        kt = _load_rows(sk_base, rows, stride_skr, offs_dk, n_ok, DK, BLOCK_DK, True)
        vt = _load_rows(sv_base, rows, stride_svr, offs_dv, n_ok, DV, BLOCK_DV, True)
        # a -inf bias masks the keys past cnt: no per-logit select
        bias = _load_bias(sb_base, rows, stride_sbr, n_ok, True, float("-inf"))
        acc, l_i, m_i = _softmax_step(acc, l_i, m_i, q, kt, vt, bias, n_ok[None, :], qk_scale, False, DOT_PREC)

    seen = l_i > 0.0
    l_safe = tl.where(seen, l_i, 1.0)
    out = acc / l_safe[:, None]
    _store_rows(o_ptr + b64 * stride_ob + h * stride_oh, qi, stride_ot, offs_dv, row_ok, out, DV, BLOCK_DV)
    lse2 = tl.where(row_ok & seen, m_i + tl.log2(l_safe), float("inf"))
    tl.store(lse_ptr + bh.to(tl.int64) * LP + qi, lse2, mask=offs_m < ROWS)


POISON_OUTPUTS = False
"""Tests set this so every buffer the launchers allocate starts as NaN: an element a kernel
forgets to write then fails the comparison instead of passing by luck."""

LOG2E = 1.4426950408889634


def _empty(shape, device, dtype):
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    return torch.empty(shape, device=device, dtype=dtype)


def register_cap(maxnreg: int | None) -> dict:
    """Launch option capping registers per thread (None: the compiler's choice). A cap lets more
    programs share a multiprocessor, at the price of spills where the kernel wants more."""
    return {} if maxnreg is None else {"maxnreg": maxnreg}


def launch_setting(cfg) -> tuple[int, int, int, int, int | None]:
    """(BLOCK_M, BLOCK_N, warps, stages, register cap or None) of a (BLOCK_M, BLOCK_N, warps,
    stages[, register cap]) tuple."""
    bm, bn, warps, stages, *cap = cfg
    return bm, bn, warps, stages, (cap[0] if cap else None)


def dot_prec(dtype) -> str:
    """IEEE fp32 dots for fp32 inputs (tl.dot would use tf32 on GPUs); tensor cores otherwise."""
    return "ieee" if dtype == torch.float32 else "tf32"


def query_rows(block_m: int, chunk: int) -> tuple[int, int]:
    """(BLOCK_M, ROWS): the largest power-of-two tile <= block_m dividing the chunk (>= 16 for
    tl.dot), or, when none does, one tile of next_pow2(chunk) rows per chunk, rows >= chunk masked."""
    bm = block_m
    while bm > 16 and chunk % bm:
        bm //= 2
    if chunk % bm == 0:
        return bm, bm
    return max(16, triton.next_power_of_2(chunk)), chunk


def sel_strides(t: torch.Tensor | None, indexed: bool, like: torch.Tensor):
    """(tensor, stride_b, stride_c, stride_row, stride_h) of the selected rows' source: t
    [B, NC, K, H(, D)] (gathered), or like [B, Tk, H(, D)] itself (indexed)."""
    if indexed:  # rows index k / v [B, Tk, H, D] directly
        return like, like.stride(0), 0, like.stride(1), like.stride(2)
    return t, t.stride(0), t.stride(1), t.stride(2), t.stride(3)


def sparse_attention_fwd(q, k, v, kb, sel_k, sel_v, sel_b, rows, cnt, *, chunk_size, window, causal, q_start,
                         k_start, scale, block_m=64, block_n=64, num_warps=4, num_stages=2, maxnreg=None):
    """Forward launch. q [B, Tq, H, DK], k [B, Tk, H, DK], v [B, Tk, H, DV] (last dim contiguous),
    kb [B, Tk, H] fp32 key biases; sel_k / sel_v [B, NC, K, H, D] and sel_b [B, NC, K, H] fp32, or
    all None (indexed: rows index k, kb); rows [B, NC, K] int32, cnt [B, NC] int32 (compacted
    lists). Returns out [B, Tq, H, DV] (q.dtype) and the base-2 lse [B*H, NC*chunk] fp32 (+inf on
    padding rows)."""
    bsz, Tq, H, DK = q.shape
    Tk, DV = k.shape[1], v.shape[-1]
    NC, K = rows.shape[1], rows.shape[2]
    BLOCK_M, ROWS = query_rows(block_m, chunk_size)
    LP = NC * chunk_size
    indexed = sel_k is None
    out = _empty((bsz, Tq, H, DV), q.device, q.dtype)
    lse = _empty((bsz * H, LP), q.device, torch.float32)
    if Tq == 0:
        return out, lse
    sk = sel_strides(sel_k, indexed, k)
    sv = sel_strides(sel_v, indexed, v)
    sb = sel_strides(sel_b, indexed, kb)
    grid = (NC * (chunk_size // ROWS), bsz * H)
    _sparse_attn_fwd_kernel[grid](
        q, k, v, kb, sk[0], sv[0], sb[0], rows, cnt, out, lse,
        Tq, Tk, H, NC, K, q_start, k_start, LP, scale * LOG2E,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        kb.stride(0), kb.stride(1), kb.stride(2),
        *sk[1:], *sv[1:], *sb[1:],
        out.stride(0), out.stride(1), out.stride(2),
        CHUNK=chunk_size, WINDOW=window, CAUSAL=causal, ROWS=ROWS, DK=DK, DV=DV,
        BLOCK_M=BLOCK_M, BLOCK_N=block_n, BLOCK_DK=max(16, triton.next_power_of_2(DK)),
        BLOCK_DV=max(16, triton.next_power_of_2(DV)), DOT_PREC=dot_prec(q.dtype),
        num_warps=num_warps, num_stages=num_stages, **register_cap(maxnreg),
    )
    return out, lse
