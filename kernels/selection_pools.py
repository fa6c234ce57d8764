"""Triton kernel finishing the causal selection: every query chunk's pool of keys, merged a block at a time.

`select_causal` (genossa/ops/sparse_attention/selection.py) cuts the chunks into runs of S ("super-blocks")
and finds, by a parallel scan, the pool before each run: the top-cap order keys of every candidate
before it, best first. Chunk j of a run then pools top-cap(pool before the run u its blocks 0..j), each
block being the C positions that became candidates at that chunk. The torch rule is one sorted top-k
per chunk over (cap + (j + 1) C) keys: at 1M bases (8,192 chunks, cap 2,048) a radix select and a
segmented sort of 33.5M int64 keys, then ~6 passes splitting them into positions and validity.

Here one program per run merges, chunk after chunk, its pool (sorted) with the chunk's block (sorted,
C keys): pool_j = top-cap(pool_{j-1} u block_j). In a merge of two sorted lists an entry's place is its
index plus the number of entries of the other list above it, found by a binary search; entries placed
past cap drop out. Keys are distinct except the empty key (every empty entry has it): a pool entry
counts the block's entries strictly above it, a block entry those at or above it, so empty entries of
the block place past cap and the pool's own fill every place after the non-empty ones. Each chunk's
pool goes straight out as positions and validity (rank < the chunk's budget, position >= 0), and the
pool itself to a per-program scratch row (two rows, in turn) that the next chunk reads; the last
chunk's pool is also written out (the state streaming carries on).

Grid (B * NG): NG runs of S chunks per sequence; blocks [B, NG * S, C] (sorted, best first, padded
with empty keys), pools before the runs [B, NG, cap] (sorted, best first).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _count_above(row_ptr, n, vals, STEPS: tl.constexpr, OR_EQUAL: tl.constexpr):
    """For each of vals, how many of the n entries of a row sorted best first (descending) are above it
    (or at or above it): a branchless binary search over the prefix where the comparison holds.
    STEPS = log2(a power of two >= n) + 1."""
    cnt = tl.zeros(vals.shape, tl.int32)
    for t in tl.static_range(STEPS):
        step = 1 << (STEPS - 1 - t)
        idx = cnt + (step - 1)
        inside = idx < n
        entry = tl.load(row_ptr + idx, mask=inside, other=0)
        if OR_EQUAL:
            holds = entry >= vals
        else:
            holds = entry > vals
        cnt = tl.where(inside & holds, cnt + step, cnt)
    return cnt


@triton.jit
def _emit(keys, rank, keep, kc, out_off, scratch_ptr, pos_ptr, valid_ptr, last_ptr, last_cap):
    """Place merged keys at their ranks: the next pool (scratch), the chunk's positions and validity,
    and the final pool (last_cap: cap on the last chunk, else 0)."""
    tl.store(scratch_ptr + rank, keys, mask=keep)
    pos = keys - ((keys >> 32) << 32) - 1  # the low 32 bits hold pos + 1
    tl.store(pos_ptr + out_off + rank, pos, mask=keep)
    tl.store(valid_ptr + out_off + rank, ((rank < kc) & (pos >= 0)).to(tl.uint8), mask=keep)
    tl.store(last_ptr + rank, keys, mask=keep & (rank < last_cap))


@triton.jit
def _chunk_pools_kernel(before_ptr, blocks_ptr, budget_ptr, pos_ptr, valid_ptr, last_ptr, scratch_ptr,
                        NG, NC, S, CAP, C,
                        CAP_STEPS: tl.constexpr, C_STEPS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)  # b * NG + g
    b = pid // NG
    g = pid % NG
    offs = tl.arange(0, BLOCK)
    pool_ptr = before_ptr + pid.to(tl.int64) * CAP
    scratch_ptr += pid.to(tl.int64) * 2 * CAP
    last_ptr += b.to(tl.int64) * CAP
    n_steps = tl.minimum(S, NC - g * S)
    for j in range(0, n_steps):
        c = g * S + j
        block_ptr = blocks_ptr + (b.to(tl.int64) * NG * S + c) * C
        next_ptr = scratch_ptr + (j % 2) * CAP
        out_off = (b.to(tl.int64) * NC + c) * CAP
        kc = tl.load(budget_ptr + b * NC + c)
        last_cap = tl.where(c == NC - 1, CAP, 0)
        for i0 in range(0, CAP, BLOCK):  # the pool's entries: their index + the block's entries above
            i = i0 + offs
            inside = i < CAP
            keys = tl.load(pool_ptr + i, mask=inside, other=0)
            rank = i + _count_above(block_ptr, C, keys, C_STEPS, False)
            _emit(keys, rank, inside & (rank < CAP), kc, out_off, next_ptr, pos_ptr, valid_ptr, last_ptr, last_cap)
        for i0 in range(0, C, BLOCK):  # the block's entries: their index + the pool's entries at or above
            i = i0 + offs
            inside = i < C
            keys = tl.load(block_ptr + i, mask=inside, other=0)
            rank = i + _count_above(pool_ptr, CAP, keys, CAP_STEPS, True)
            _emit(keys, rank, inside & (rank < CAP), kc, out_off, next_ptr, pos_ptr, valid_ptr, last_ptr, last_cap)
        tl.debug_barrier()  # the next chunk reads this pool, placed by every thread of the program
        pool_ptr = next_ptr


@triton.jit
def _scan_step_kernel(src_ptr, dst_ptr, M, D, CAP, CAP_STEPS: tl.constexpr, BLOCK: tl.constexpr):
    """One step of an inclusive scan of pools (Hillis-Steele): dst[i] = top-cap(src[i] u src[i - D]) for
    i >= D, src[i] otherwise; every row sorted best first. Grid (B * M): row b * M + i of [B, M, CAP]."""
    pid = tl.program_id(0)
    i = pid % M
    a_ptr = src_ptr + pid.to(tl.int64) * CAP
    out_ptr = dst_ptr + pid.to(tl.int64) * CAP
    offs = tl.arange(0, BLOCK)
    if i >= D:
        b_ptr = a_ptr - D * CAP  # covers other runs than row i: no key in both but the empty one
        for i0 in range(0, CAP, BLOCK):
            j = i0 + offs
            inside = j < CAP
            keys = tl.load(a_ptr + j, mask=inside, other=0)
            rank = j + _count_above(b_ptr, CAP, keys, CAP_STEPS, False)
            tl.store(out_ptr + rank, keys, mask=inside & (rank < CAP))
            keys = tl.load(b_ptr + j, mask=inside, other=0)
            rank = j + _count_above(a_ptr, CAP, keys, CAP_STEPS, True)
            tl.store(out_ptr + rank, keys, mask=inside & (rank < CAP))
    else:
        for i0 in range(0, CAP, BLOCK):
            j = i0 + offs
            tl.store(out_ptr + j, tl.load(a_ptr + j, mask=j < CAP, other=0), mask=j < CAP)


def scan_pools(pools: torch.Tensor, block: int = 512) -> torch.Tensor:
    """[B, M, cap] pools of order keys, each sorted best first -> out[:, i] = top-cap(pools[:, 0] u ... u
    pools[:, i]), sorted best first: ceil(log2 M) launches of `_scan_step_kernel`. The pools must hold
    distinct keys apart from the empty key (they do: each covers other positions)."""
    bsz, M, cap = pools.shape
    src = pools.contiguous()  # read by the first step only: the input is never written
    spare = [torch.empty_like(src), torch.empty_like(src)] if M > 1 else []
    D, step = 1, 0
    while D < M:
        dst = spare[step % 2]
        _scan_step_kernel[(bsz * M,)](src, dst, M, D, cap, CAP_STEPS=_steps(cap),
                                      BLOCK=min(block, triton.next_power_of_2(cap)), num_warps=4, num_stages=1)
        src, D, step = dst, D * 2, step + 1
    return src


def _steps(n: int) -> int:
    return triton.next_power_of_2(max(n, 1)).bit_length()


def chunk_pools(before: torch.Tensor, blocks: torch.Tensor, budget: torch.Tensor, n_chunks: int,
                block: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pos [B, NC, cap] int64, valid [B, NC, cap] bool, last [B, cap] order keys) of every chunk's pool.

    before: [B, NG, cap] int64 order keys, best first, the pool before each run of S chunks;
    blocks: [B, NG * S, C] int64 order keys, best first, the keys that become candidates at each chunk
    (empty keys past n_chunks); budget: [B, NC] int64, the chunks' k. See the module docstring.
    """
    bsz, n_groups, cap = before.shape
    C = blocks.shape[2]
    S = blocks.shape[1] // n_groups
    dev = before.device
    pos = torch.empty(bsz, n_chunks, cap, dtype=torch.int64, device=dev)
    valid = torch.empty(bsz, n_chunks, cap, dtype=torch.bool, device=dev)
    last = torch.empty(bsz, cap, dtype=torch.int64, device=dev)
    scratch = torch.empty(bsz * n_groups, 2, cap, dtype=torch.int64, device=dev)
    _chunk_pools_kernel[(bsz * n_groups,)](
        before.contiguous(), blocks.contiguous(), budget.contiguous(), pos, valid.view(torch.uint8), last, scratch,
        n_groups, n_chunks, S, cap, C,
        CAP_STEPS=_steps(cap), C_STEPS=_steps(C), BLOCK=min(block, triton.next_power_of_2(max(cap, C))),
        num_warps=4, num_stages=1,
    )
    return pos, valid, last
