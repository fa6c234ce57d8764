"""Triton kernel turning each query chunk's selection list into the row list the attention kernels read.

The rule is `usable_selection` + `compact_selection` (genossa/ops/sparse_attention/triton.py) for
lists whose valid positions differ (distinct=True, as select_causal's and select_bidirectional's):
entry j of chunk c (queries from i0 = q_start + c * CHUNK) is used iff it is valid, pos >= 0 and
pos < i0 - WINDOW, or (bidirectional) pos >= i0 + CHUNK + WINDOW. The used entries' rows
(pos - k_start) go first, in list order, cnt is their number, zeros follow. Those torch ops take
~10 passes over the [B, NC, K] lists (16.8M entries at 1M bases, ~1.5 ms on an H200); this is one.

Grid (B * NC): one program per chunk's list, BLOCK entries at a time, each block's used entries
placed by a prefix sum after those of the blocks before.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _selection_rows_kernel(pos_ptr, valid_ptr, rows_ptr, cnt_ptr, K, NC, q_start, k_start,
                           CHUNK: tl.constexpr, WINDOW: tl.constexpr, CAUSAL: tl.constexpr,
                           BLOCK: tl.constexpr):
    pid = tl.program_id(0)  # b * NC + c
    i0 = q_start + (pid % NC) * CHUNK
    base = pid.to(tl.int64) * K
    offs = tl.arange(0, BLOCK)
    count = tl.zeros([], tl.int32)
    for k0 in range(0, K, BLOCK):
        j = k0 + offs
        in_list = j < K
        pos = tl.load(pos_ptr + base + j, mask=in_list, other=-1)
        use = (tl.load(valid_ptr + base + j, mask=in_list, other=0) != 0) & (pos >= 0)
        if CAUSAL:
            use = use & (pos < i0 - WINDOW)
        else:
            use = use & ((pos < i0 - WINDOW) | (pos >= i0 + CHUNK + WINDOW))
        used = use.to(tl.int32)
        slot = count + tl.cumsum(used, 0) - 1
        tl.store(rows_ptr + base + slot, (pos - k_start).to(tl.int32), mask=use)
        count += tl.sum(used, 0)
    tl.store(cnt_ptr + pid, count)
    for k0 in range(0, K, BLOCK):
        j = k0 + offs
        tl.store(rows_ptr + base + j, tl.zeros([BLOCK], tl.int32), mask=(j >= count) & (j < K))


def selection_rows(sel_pos: torch.Tensor, sel_valid: torch.Tensor, *, q_start: int, chunk_size: int, window: int,
                   causal: bool, k_start: int, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows [B, NC, K] int32, cnt [B, NC] int32) of distinct-position lists sel_pos / sel_valid
    [B, NC, K]: rows index k (which starts at k_start); the rule in the module docstring."""
    bsz, n_chunks, n_sel = sel_pos.shape
    rows = torch.empty(bsz, n_chunks, n_sel, dtype=torch.int32, device=sel_pos.device)
    cnt = torch.zeros(bsz, n_chunks, dtype=torch.int32, device=sel_pos.device)
    if bsz * n_chunks == 0 or n_sel == 0:
        return rows, cnt
    valid = sel_valid.contiguous()
    if valid.dtype == torch.bool:
        valid = valid.view(torch.uint8)
    _selection_rows_kernel[(bsz * n_chunks,)](
        sel_pos.contiguous(), valid, rows, cnt, n_sel, n_chunks, q_start, k_start,
        CHUNK=chunk_size, WINDOW=window, CAUSAL=causal, BLOCK=min(block, triton.next_power_of_2(n_sel)),
        num_warps=4,
    )
    return rows, cnt
