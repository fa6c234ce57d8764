"""Triton implementation of the scan-informed sparse attention (`sparse_attention(..., impl="triton")`).

Same contract and numbers as `naive_sparse_attention` (naive.py): forward and the gradients of
q, k, v, sel_k, sel_v and the per-key biases (key_bias, sel_bias: fp32, the scan bias of bias.py). The kernels (genossa.kernels.sparse_attention_fwd / _bwd) run one
dense FlashAttention per query tile over (its chunk's local span) then (its chunk's selected
keys); memory is O(Tq) beyond the inputs (out, a base-2 log-sum-exp and delta, fp32 [B*H, Tq]).

Which selected entries count is settled here, once per call, on the device, in O(NC * K log K):
an entry is used iff it is valid, >= 0, outside the chunk's local span, not after the chunk's
queries (causal: before i0 - window) and the first of its repeats in the list. Each chunk's used
entries are compacted to the front (`rows`, `cnt`) so the kernels stop after the last one. Lists
known to hold distinct positions (`distinct=True`) need no de-duplication: one Triton pass
(genossa.kernels.selection_rows) then does both steps.

Two layouts of the selected keys:

* `sparse_attention_triton`: gathered sel_k / sel_v [B, NC, K, H, D], the public op's contract
  (the streaming module needs it: pooled keys may lie before k_start). Their gradients are
  dsel_k / dsel_v, as the reference's.
* `sparse_attention_indexed`: no gathered copy; the kernels read the selected rows of k, v at
  sel_pos - k_start and add their gradients into dk, dv (fp32 atomics). Equal to
  `sparse_attention(q, k, v, gather_selected(k, sel_pos, k_start), gather_selected(v, ...), ...)`
  when every used position lies in k, with memory O(Tq) instead of O(NC * K) (at 1M bases,
  chunk 128 and 2048 keys, the gathered copies of k and v would take 17 GB each in bf16).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from genossa.kernels.selection_rows import selection_rows
from genossa.kernels.sparse_attention_bwd import sparse_attention_bwd
from genossa.kernels.sparse_attention_fwd import launch_setting, sparse_attention_fwd
from genossa.ops.sparse_attention.selection import pool_slots

KERNEL_CONFIG = {
    "fwd": (128, 64, 4, 3),
    "dq": (128, 32, 4, 3),
    "dkv": (32, 64, 4, 3),
    "sel": (32, 128, 4, 3),
}
"""Launch parameters (BLOCK_M queries, BLOCK_N keys, warps, stages[, register cap]) per kernel for 16-bit inputs,
from benchmarks/attention_bench.py's sweeps (chunk 128, head dim 64; H100, and on an H200 in
sessions 7-11). Where the dq kernel's query tile holds a whole chunk (BLOCK_M >= chunk) it also
forms the selected keys' dk, dv and "sel" is unused; 32-key tiles there (64 spill). dkv's 64-key
tiles spill nothing (128 spilled) and won by ~1% twice (sessions 7, 10). Register caps that fit
2-3 programs per multiprocessor were slower everywhere (session 10). fp32 tiles are twice as
large: FP32_CONFIG."""

FP32_CONFIG = {"fwd": (64, 32, 4, 1), "dq": (64, 32, 4, 1), "dkv": (32, 64, 4, 1), "sel": (32, 64, 4, 1)}


def usable_selection(sel_pos: Tensor, sel_valid: Tensor, *, q_start: int, chunk_size: int, window: int,
                     causal: bool, distinct: bool = False) -> Tensor:
    """[B, NC, K] bool: the entries the reference attends to (rules in the module docstring).
    distinct: the caller guarantees that a chunk's valid positions differ (select_causal's and
    select_bidirectional's do), so the de-duplication, a sort of every list, is skipped."""
    n_chunks, n_sel = sel_pos.shape[1], sel_pos.shape[2]
    i0 = q_start + torch.arange(n_chunks, device=sel_pos.device)[:, None] * chunk_size  # [NC, 1]
    use = sel_valid.bool() & (sel_pos >= 0) & (sel_pos < i0 - window)
    if not causal:  # causal: a key at or after i0 + chunk is after every query of the chunk
        use = use | (sel_valid.bool() & (sel_pos >= i0 + chunk_size + window))
    if distinct:
        return use
    # keep the first of repeated positions: a stable sort puts it first among its equals
    slot = torch.arange(n_sel, device=sel_pos.device)
    key = torch.where(use, sel_pos, -2 - slot)  # unused entries never equal anything
    if causal:  # used positions lie before the last chunk: int32 keys halve the radix sort's passes
        key = key.to(torch.int32)
    sorted_key, order = torch.sort(key, dim=-1, stable=True)
    repeat = torch.zeros_like(use)
    repeat[..., 1:] = sorted_key[..., 1:] == sorted_key[..., :-1]
    return use & ~torch.zeros_like(use).scatter(-1, order, repeat)


def compact_selection(use: Tensor, sel_pos: Tensor, *, indexed: bool, k_start: int) -> tuple[Tensor, Tensor]:
    """(rows [B, NC, K] int32, cnt [B, NC] int32): each chunk's used entries first, in list order,
    as slots of the list (gathered) or indices into k (indexed); 0 after them. Each used entry
    goes to slot (number of used entries before it) by one scatter, unused ones to a spare slot."""
    n_sel = use.shape[-1]
    src = sel_pos - k_start if indexed else torch.arange(n_sel, device=use.device).expand_as(sel_pos)
    dest = torch.where(use, torch.cumsum(use, -1) - 1, n_sel)
    rows = torch.zeros(*use.shape[:-1], n_sel + 1, dtype=torch.int32, device=use.device)
    rows.scatter_(-1, dest, src.to(torch.int32))
    return rows[..., :n_sel].contiguous(), use.sum(-1, dtype=torch.int32).contiguous()


def _configs(dtype, head_dims):
    """Launch parameters for this dtype; head dims above 128 (padded to 256) take tiles of at most
    64 x 64 and one stage, to fit registers and shared memory."""
    cfg = FP32_CONFIG if dtype == torch.float32 else KERNEL_CONFIG
    if max(head_dims) > 128:
        cfg = {name: (min(bm, 64), min(bn, 64), warps, 1) for name, (bm, bn, warps, *_) in cfg.items()}
    return cfg


class SparseAttentionFunction(torch.autograd.Function):
    """out = attention(q, k, v, kb, selected); sel_k / sel_v / sel_b None selects the indexed layout."""

    @staticmethod
    def forward(ctx, q, k, v, kb, sel_k, sel_v, sel_b, rows, cnt, chunk_size, window, causal, q_start, k_start,
                scale):
        kw = dict(chunk_size=chunk_size, window=window, causal=causal, q_start=q_start, k_start=k_start, scale=scale)
        bm, bn, warps, stages, cap = launch_setting(_configs(q.dtype, (q.shape[-1], v.shape[-1]))["fwd"])
        out, lse = sparse_attention_fwd(q, k, v, kb, sel_k, sel_v, sel_b, rows, cnt, block_m=bm, block_n=bn,
                                        num_warps=warps, num_stages=stages, maxnreg=cap, **kw)
        ctx.save_for_backward(q, k, v, kb, sel_k, sel_v, sel_b, rows, cnt, out, lse)
        ctx.kw = kw
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, kb, sel_k, sel_v, sel_b, rows, cnt, out, lse = ctx.saved_tensors
        cfg = _configs(q.dtype, (q.shape[-1], v.shape[-1]))
        need_sel = any(ctx.needs_input_grad[4:7])
        dq, dk, dv, dkb, dsk, dsv, dsb = sparse_attention_bwd(
            _last_contiguous(dout), q, k, v, kb, sel_k, sel_v, sel_b, rows, cnt, out, lse, need_sel=need_sel,
            dq_cfg=cfg["dq"], dkv_cfg=cfg["dkv"], sel_cfg=cfg["sel"], **ctx.kw,
        )
        return dq, dk, dv, dkb, dsk, dsv, dsb, None, None, None, None, None, None, None, None


def _last_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _by_head(bias: Tensor) -> Tensor:
    """Key biases [..., T, H] with each head's T values next to each other in memory (the same
    shape): a key tile's biases are one contiguous load, not T loads H apart (H200: forward
    -9% / forward+backward -7.5% at 1M; benchmarks/RESULTS.md, session 7)."""
    return bias.transpose(-1, -2).contiguous().transpose(-1, -2)


def _biases(key_bias: Tensor | None, sel_bias: Tensor | None, k: Tensor, sel_pos: Tensor | None):
    """fp32 key biases [B, Tk, H] (and, with sel_pos, the selected keys' [B, NC, K, H]); zeros
    where none is given (a plain attention)."""
    if sel_pos is not None and (key_bias is None) != (sel_bias is None):
        raise ValueError("sparse_attention: key_bias and sel_bias go together (both or neither)")
    if key_bias is None:
        key_bias = k.new_zeros(k.shape[:3], dtype=torch.float32)
    elif key_bias.shape != k.shape[:3]:
        raise ValueError(f"sparse_attention: key_bias [B, Tk, H] = {tuple(k.shape[:3])} expected, "
                         f"got {tuple(key_bias.shape)}")
    if sel_pos is not None:
        if sel_bias is None:
            sel_bias = key_bias.new_zeros(*sel_pos.shape, k.shape[2])
        elif sel_bias.shape != (*sel_pos.shape, k.shape[2]):
            raise ValueError(f"sparse_attention: sel_bias [B, NC, K, H] expected, got {tuple(sel_bias.shape)}")
        sel_bias = sel_bias.float().contiguous()
    return key_bias.float(), sel_bias


def _check(q, k, v, sel_pos, sel_valid, chunk_size, window, causal, q_start, k_start):
    if q.dim() != 4 or k.shape[:1] + k.shape[2:] != q.shape[:1] + q.shape[2:] or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"sparse_attention: q [B, Tq, H, Dk], k [B, Tk, H, Dk], v [B, Tk, H, Dv] expected, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"sparse_attention (triton): q must be fp16, bf16 or fp32, got {q.dtype}")
    if chunk_size <= 0 or window < 0:
        raise ValueError(f"sparse_attention: chunk_size > 0 and window >= 0 expected, got {chunk_size}, {window}")
    bsz, n_q = q.shape[:2]
    n_keys = k.shape[1]
    if q_start % chunk_size:
        raise ValueError(f"sparse_attention: q_start {q_start} is not a multiple of chunk_size {chunk_size}")
    if k_start > max(0, q_start - window) or (causal and k_start + n_keys < q_start + n_q):
        raise ValueError(
            f"sparse_attention: keys [{k_start}, {k_start + n_keys}) do not cover the local spans of "
            f"queries [{q_start}, {q_start + n_q}) with window {window}"
        )
    n_chunks = -(-n_q // chunk_size)
    if sel_pos.shape != sel_valid.shape or sel_pos.dim() != 3 or sel_pos.shape[:2] != (bsz, n_chunks):
        raise ValueError(
            f"sparse_attention: sel_pos and sel_valid must be [B, NC={n_chunks}, K], got "
            f"{tuple(sel_pos.shape)}, {tuple(sel_valid.shape)}"
        )


def sparse_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    sel_k: Tensor,
    sel_v: Tensor,
    sel_pos: Tensor,
    sel_valid: Tensor,
    *,
    chunk_size: int,
    window: int,
    causal: bool = True,
    q_start: int = 0,
    k_start: int = 0,
    scale: float | None = None,
    key_bias: Tensor | None = None,
    sel_bias: Tensor | None = None,
) -> Tensor:
    """`sparse_attention` on Triton kernels; the contract of `sparse_attention(..., impl="naive")`.

    q [B, Tq, H, Dk], k [B, Tk, H, Dk], v [B, Tk, H, Dv], sel_k [B, NC, K, H, Dk],
    sel_v [B, NC, K, H, Dv], sel_pos / sel_valid [B, NC, K], optional key_bias [B, Tk, H] with
    sel_bias [B, NC, K, H]; returns [B, Tq, H, Dv] in q.dtype. k, v, sel_k and sel_v are cast to
    q.dtype (fp16, bf16 or fp32), the biases to fp32. Needs a CUDA GPU, or the CPU with
    TRITON_INTERPRET=1.
    """
    _check(q, k, v, sel_pos, sel_valid, chunk_size, window, causal, q_start, k_start)
    key_bias, sel_bias = _biases(key_bias, sel_bias, k, sel_pos)
    if sel_k.shape[:4] != sel_pos.shape + q.shape[2:3] or sel_v.shape[:4] != sel_k.shape[:4]:
        raise ValueError(
            f"sparse_attention: sel_k [B, NC, K, H, Dk] and sel_v [B, NC, K, H, Dv] expected, got "
            f"{tuple(sel_k.shape)}, {tuple(sel_v.shape)}"
        )
    if sel_k.shape[-1] != q.shape[-1] or sel_v.shape[-1] != v.shape[-1]:
        raise ValueError("sparse_attention: sel_k / sel_v head dims must equal k's / v's")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    dt = q.dtype
    q, k, v, sel_k, sel_v = (_last_contiguous(t.to(dt)) for t in (q, k, v, sel_k, sel_v))
    if q.shape[1] == 0:
        return q.new_zeros(*q.shape[:3], v.shape[-1])
    use = usable_selection(sel_pos, sel_valid, q_start=q_start, chunk_size=chunk_size, window=window, causal=causal)
    rows, cnt = compact_selection(use, sel_pos, indexed=False, k_start=k_start)
    return SparseAttentionFunction.apply(q, k, v, _by_head(key_bias), sel_k, sel_v, _by_head(sel_bias), rows, cnt,
                                         chunk_size, window, causal, q_start, k_start, scale)


def sparse_attention_indexed(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    sel_pos: Tensor,
    sel_valid: Tensor,
    *,
    chunk_size: int,
    window: int,
    causal: bool = True,
    q_start: int = 0,
    k_start: int = 0,
    scale: float | None = None,
    key_bias: Tensor | None = None,
    pool_k: Tensor | None = None,
    pool_v: Tensor | None = None,
    pool_bias: Tensor | None = None,
    pool_pos: Tensor | None = None,
    distinct: bool = False,
) -> Tensor:
    """Sparse attention whose selected keys are read from k, v at sel_pos (no gathered copy).

    Equals `sparse_attention_triton(q, k, v, gather_selected(k, sel_pos, k_start),
    gather_selected(v, sel_pos, k_start), sel_pos, sel_valid, key_bias=key_bias,
    sel_bias=gather_selected(key_bias, sel_pos, k_start), ...)`; gradients flow to q, k, v and
    key_bias [B, Tk, H] (optional).
    Every used position (valid, outside the local span, ...) must lie in [k_start, k_start + Tk)
    or, with a pool (a streaming cache's keys pool_k / pool_v [B, P, H, D] at positions pool_pos
    [B, P], all before k_start, with pool_bias [B, P, H] where key_bias is given), be one of the
    pool's positions: a ValueError otherwise (on a GPU a device-side assertion, which does not wait). The
    pool's rows go in front of k (P rows, read by index like k's), so streaming keeps the O(Tq)
    memory of the whole-sequence pass; gradients flow to pool_k, pool_v and pool_bias too.
    distinct=True promises that each chunk's valid positions differ (as select_causal's and
    select_bidirectional's do) and skips the de-duplication (at 1M bases a sort of 16.8M entries);
    repeated positions would then be attended to more than once.
    """
    _check(q, k, v, sel_pos, sel_valid, chunk_size, window, causal, q_start, k_start)
    if pool_k is not None and (key_bias is None) != (pool_bias is None):
        raise ValueError("sparse_attention_indexed: key_bias and pool_bias go together (both or neither)")
    key_bias = _biases(key_bias, None, k, None)[0]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    dt = q.dtype
    if q.shape[1] == 0:
        return q.new_zeros(*q.shape[:3], v.shape[-1])
    pooled = pool_k is not None and k_start > 0
    # a used causal entry lies in [0, i0 - window), inside k when k starts at 0 and reaches the last
    # query: nothing to check
    covered = causal and not pooled and k_start == 0 and k.shape[1] >= q_start + q.shape[1]
    # distinct lists index k directly: one kernel finds and compacts the used entries (selection_rows)
    one_pass = distinct and not pooled
    use = None if one_pass and covered else usable_selection(
        sel_pos, sel_valid, q_start=q_start, chunk_size=chunk_size, window=window, causal=causal, distinct=distinct)
    keys = f"[{k_start}, {k_start + k.shape[1]})"  # for the error below, before the pool shifts k_start
    row_pos = sel_pos
    known = None if covered else (sel_pos >= k_start) & (sel_pos < k_start + k.shape[1])
    if pooled:
        # rows of [pool; k] as positions from k_start - P: the kernel's local spans (>= k_start,
        # since k_start <= q_start - window) keep their rows, pooled keys take rows 0..P-1
        n_pool = pool_k.shape[1]
        slot, in_pool = pool_slots(sel_pos, pool_pos)
        in_pool &= sel_pos < k_start
        row_pos = torch.where(in_pool, k_start - n_pool + slot, sel_pos)
        known |= in_pool
        k, v = torch.cat([pool_k.to(k.dtype), k], 1), torch.cat([pool_v.to(v.dtype), v], 1)
        pool_bias = pool_bias if pool_bias is not None else pool_k.new_zeros(pool_k.shape[:3], dtype=torch.float32)
        key_bias = torch.cat([pool_bias.float(), key_bias], 1)
        k_start -= n_pool
    # unless covered (above), check, on a GPU without waiting for it (a host sync per layer drained
    # the launch queue: 16 per base-preset forward)
    if not covered:
        message = (f"sparse_attention_indexed: a selected position lies outside the keys {keys} and the pool; "
                   f"pass gathered keys to sparse_attention_triton instead")
        outside = (use & ~known).any()
        if outside.is_cuda:
            torch._assert_async(~outside, message)
        elif bool(outside):
            raise ValueError(message)
    q, k, v = (_last_contiguous(t.to(dt)) for t in (q, k, v))
    if one_pass:
        rows, cnt = selection_rows(sel_pos, sel_valid, q_start=q_start, chunk_size=chunk_size, window=window,
                                   causal=causal, k_start=k_start)
    else:
        rows, cnt = compact_selection(use, row_pos, indexed=True, k_start=k_start)
    return SparseAttentionFunction.apply(q, k, v, _by_head(key_bias), None, None, None, rows, cnt, chunk_size,
                                         window, causal, q_start, k_start, scale)


__all__ = [
    "FP32_CONFIG", "KERNEL_CONFIG", "SparseAttentionFunction", "compact_selection", "sparse_attention_indexed",
    "sparse_attention_triton", "usable_selection",
]
