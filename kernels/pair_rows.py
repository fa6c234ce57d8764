"""Triton kernel merging two neighbouring query chunks' row lists into one list with membership bits.

The attention kernels' paired mode (sparse_attention_fwd.py) runs the queries of chunks 2p and 2p + 1 in
one program over one list of keys: the union of the two chunks' compacted lists (`rows`, `cnt`, as
selection_rows or compact_selection make them, each list's rows distinct), each entry with a bit per
chunk saying which of the two sees it (bit 0: chunk 2p, bit 1: chunk 2p + 1). A causal selection's
neighbouring lists share all but about a chunk's worth of keys (chunk c + 1's pool is the top of chunk
c's pool and the keys that became candidates at c + 1), so the union is barely longer than one list,
and the program gathers each shared key once, and adds its dk, dv once, for both chunks.

Grid (B * NP), NP = ceil(NC / 2); a missing chunk 2p + 1 (NC odd) has an empty list. One program sorts
its pair's entries, tagged row * 2 + (0 for chunk 2p, 1 for 2p + 1), so a row both lists hold comes as
two neighbours, the first tagged 0; the second is dropped and the first gets both bits. The kept
entries go first, in increasing row order (which also brings neighbouring keys' gathers together),
`cnt` is their number; entries past it are not written (the kernels stop at cnt).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_NONE = 2**31 - 1  # the tag of an empty entry: sorts last


@triton.jit
def _pair_rows_kernel(rows_ptr, cnt_ptr, pair_rows_ptr, bits_ptr, pair_cnt_ptr, NC, NP, K, K2,
                      HALF: tl.constexpr):
    pid = tl.program_id(0)  # b * NP + p
    b = pid // NP
    c0 = b * NC + 2 * (pid % NP)
    has1 = 2 * (pid % NP) + 1 < NC
    cnt0 = tl.load(cnt_ptr + c0)
    cnt1 = tl.load(cnt_ptr + c0 + 1, mask=has1, other=0)
    offs = tl.arange(0, 2 * HALF)
    # entries [0, HALF) from chunk 2p's list, [HALF, 2 * HALF) from chunk 2p + 1's
    in0 = offs < cnt0
    in1 = (offs >= HALF) & (offs - HALF < cnt1)
    src = c0.to(tl.int64) * K + tl.where(offs < HALF, offs, K + offs - HALF)
    row = tl.load(rows_ptr + src, mask=in0 | in1, other=0)
    tag = tl.where(in0, row * 2, tl.where(in1, row * 2 + 1, _NONE))
    tag = tl.sort(tag)
    row = tag >> 1
    prev = tl.gather(tag, tl.maximum(offs - 1, 0), 0) >> 1
    nxt = tl.gather(tag, tl.minimum(offs + 1, 2 * HALF - 1), 0) >> 1
    real = tag != _NONE
    second = (tag & 1) == 1
    shared_with_prev = (offs > 0) & (prev == row)
    shared_with_next = (offs < 2 * HALF - 1) & (nxt == row)
    keep = real & ~(second & shared_with_prev)
    bits = tl.where(second, 2, tl.where(shared_with_next, 3, 1))
    slot = tl.cumsum(keep.to(tl.int32), 0) - 1
    dst = pid.to(tl.int64) * K2 + slot
    tl.store(pair_rows_ptr + dst, row, mask=keep)
    tl.store(bits_ptr + dst, bits.to(tl.int8), mask=keep)
    tl.store(pair_cnt_ptr + pid, tl.sum(keep.to(tl.int32), 0))


def pair_rows(rows: torch.Tensor, cnt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows [B, NP, 2K] int32, bits [B, NP, 2K] int8, cnt [B, NP] int32) of the chunk pairs' merged
    lists, from each chunk's compacted list rows [B, NC, K] int32 (distinct rows in its first cnt
    [B, NC] entries); NP = ceil(NC / 2). Rule: the module docstring."""
    bsz, n_chunks, n_sel = rows.shape
    n_pairs = -(-n_chunks // 2)
    out = torch.empty(bsz, n_pairs, 2 * n_sel, dtype=torch.int32, device=rows.device)
    bits = torch.empty(bsz, n_pairs, 2 * n_sel, dtype=torch.int8, device=rows.device)
    out_cnt = torch.zeros(bsz, n_pairs, dtype=torch.int32, device=rows.device)
    if bsz * n_pairs == 0 or n_sel == 0:
        return out, bits, out_cnt
    half = max(16, triton.next_power_of_2(n_sel))
    _pair_rows_kernel[(bsz * n_pairs,)](
        rows.contiguous(), cnt.contiguous(), out, bits, out_cnt, n_chunks, n_pairs, n_sel, 2 * n_sel, HALF=half,
        num_warps=8 if half >= 1024 else 4,
    )
    return out, bits, out_cnt
