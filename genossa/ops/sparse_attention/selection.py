"""The sparsity pattern: which keys each query chunk attends to, from the scan's importance.

Queries are cut into chunks of `chunk_size` starting at multiples of it; the chunk starting at
i0 ("chunk i0") attends to

* its local span: every key in [i0 - window, i] for query i (causal), or in
  [i0 - window, i0 + chunk_size + window) (bidirectional). For the kernel this is a dense
  block with a staircase causal mask on the diagonal;
* its selected keys: up to k(i0) <= cap positions *outside* the local span, shared by all
  queries of the chunk, ranked by importance.

Causal mode: the candidates of chunk i0 are the positions j < i0 - window, and the budget uses
only positions in [i0 - chunk_size, i0). Importance at j is a function of tokens <= j (causal conv
and scan), so everything chunk i0 selects depends only on tokens < i0 <= i: no query sees the
future, whatever the top-k ranks. The candidates grow by one block of chunk_size positions per
chunk, and top-cap(A u B) = top-cap(top-cap(A) u B): a pool of `cap` entries (`SelectionState`)
summarizes any prefix, and one parallel scan over the blocks gives every chunk's prefix top-k in
O(T / chunk * cap) memory. That pool, plus the last window + chunk positions, is all that
streaming inference keeps. Ties in importance go to the later position. Bidirectional mode
ranks all positions at once (a global top-k, per chunk without its own local span).

Importance and complexity come from the mixer's per-scale state norms (`combine_scales`). The
budget is k = min(cap, base + floor(alpha * complexity)) with complexity in [0, 1).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from genossa.ops.impl import resolve_impl


class Selection(NamedTuple):
    """Selected keys per query chunk."""

    pos: Tensor
    """[B, NC, cap] absolute key positions, best first (-1 where empty)."""
    valid: Tensor
    """[B, NC, cap] bool: the entry is one of the chunk's k(i0) keys."""
    budget: Tensor
    """[B, NC] int64: k(i0), the number of keys the chunk may use."""


class SelectionState(NamedTuple):
    """Running causal top-cap pool (streaming carries it between calls)."""

    score: Tensor
    """[B, cap] importance of the pooled positions (-inf where empty)."""
    pos: Tensor
    """[B, cap] int64 absolute positions (-1 where empty)."""


def combine_scales(norm: Tensor, change: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """One hierarchical importance and a complexity from per-scale state norms.

    norm, change: [B, T, S], per scale (head group) the mean over its heads of ||h_t|| and
    ||h_t - h_{t-1}||. Returns (importance [B, T], complexity [B, T]) in fp32:

    importance = sum_s log(norm_s + change_s + eps), the log of the product of the scales'
    importances: a position ranks high only if it matters at every memory scale, and the ranking
    does not change when one scale's norms are all larger (state norms grow with dt, so the
    scales differ by orders of magnitude; a plain sum would be ruled by one of them).
    complexity = mean_s change_s / (norm_s + change_s): the share of the importance that is new
    information, in [0, 1).
    """
    norm, change = norm.float(), change.float()
    score = norm + change
    importance = torch.log(score + eps).sum(-1)
    complexity = (change / (score + eps)).mean(-1)
    return importance, complexity


def change_importance(change: Tensor, eps: float = 1e-6) -> Tensor:
    """importance [B, T] from the per-scale state changes alone: sum_s log(change_s + eps)
    (the 'change' selection; combine_scales adds ||h_t||, which grows with accumulation)."""
    return torch.log(change.float() + eps).sum(-1)


def pool_slots(sel_pos: Tensor, pool_pos: Tensor) -> tuple[Tensor, Tensor]:
    """(slot [B, NC, K], found [B, NC, K]): where each selected position sits in pool_pos [B, P]
    (sorted search, O(NC * K * log P) with no [NC, K, P] comparison)."""
    ordered, order = pool_pos.sort(-1)
    flat = sel_pos.reshape(sel_pos.shape[0], -1).contiguous()
    idx = torch.searchsorted(ordered.contiguous(), flat).clamp_max(pool_pos.shape[1] - 1)
    found = ordered.gather(1, idx) == flat
    return order.gather(1, idx).view_as(sel_pos), found.view_as(sel_pos)


def budget(complexity: Tensor, base: int, alpha: float, cap: int) -> Tensor:
    """k = min(cap, base + floor(alpha * complexity)) as int64, same shape as complexity."""
    return (base + torch.floor(alpha * complexity.clamp_min(0))).clamp(max=cap).long()


def empty_selection_state(batch: int, cap: int, device: torch.device | str | None = None) -> SelectionState:
    """An empty pool (nothing selected yet)."""
    return SelectionState(
        torch.full((batch, cap), -torch.inf, device=device), torch.full((batch, cap), -1, dtype=torch.long, device=device)
    )


def _order_key(score: Tensor, pos: Tensor) -> Tensor:
    """An int64 key ordering (score, pos) totally: higher importance first, the later position on
    ties, empty entries (pos -1, score -inf) last. fp32 bits are mapped to a monotone int32 (negative
    floats flip their magnitude bits), shifted high; pos + 1 fills the low 32 bits. A total order
    makes every way of computing the prefix top-k (running pool, parallel scan) select the same keys."""
    bits = (score.float() + 0.0).contiguous().view(torch.int32).long()  # + 0.0: -0.0 ranks as 0.0
    return (torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) << 32) | (pos + 1)


_EMPTY_KEY = int(_order_key(torch.tensor(-torch.inf), torch.tensor(-1)))
"""The key of an empty entry, as a Python int: filling with it needs no host-to-device copy (a
`torch.tensor(..., device=cuda)` per call blocked the host until the GPU caught up)."""


def _split_key(key: Tensor) -> tuple[Tensor, Tensor]:
    """(score fp32, pos int64) back from `_order_key`."""
    bits = key >> 32
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int32)
    return bits.view(torch.float32), (key & 0xFFFFFFFF) - 1


def _merge(a: Tensor, b: Tensor, cap: int) -> Tensor:
    """top-cap of two pools of order keys [..., cap] (unsorted)."""
    return torch.cat([a, b], -1).topk(cap, dim=-1, sorted=False).values


def _inclusive_scan(pools: Tensor, cap: int) -> Tensor:
    """[B, M, cap] -> out[:, i] = top-cap(pools[:, 0] u ... u pools[:, i]).

    Work-efficient (Blelloch-style) recursion: merge neighbouring pairs, scan the M/2 pair pools,
    then fill the even slots with one more merge: ~2M merges in 2 log2(M) batched top-k calls."""
    M = pools.shape[1]
    if M == 1:
        return pools
    pairs = _inclusive_scan(_merge(pools[:, 0:M - 1:2], pools[:, 1::2], cap), cap)  # prefix to each odd slot
    out = torch.empty_like(pools)
    out[:, 0] = pools[:, 0]
    out[:, 1::2] = pairs
    out[:, 2::2] = _merge(pairs[:, : (M - 1) // 2], pools[:, 2::2], cap)
    return out


def _runs(blocks: Tensor, cap: int) -> tuple[Tensor, Tensor]:
    """(blocks padded with empty keys to whole runs [B, NG * S, C], the runs' pools [B, NG, cap] unsorted)
    from the blocks [B, NC, C] (the keys that become candidates at each chunk).

    A run ("super-block") of S = cap // C blocks holds S * C <= cap keys and needs no top-k among
    its own blocks, so the scans run over runs only (NC / S pools): no merge of mostly empty pools
    (at C = 128 and cap = 2,048 the scan's lower four levels)."""
    bsz, n_chunks, C = blocks.shape
    S = max(1, cap // C)
    n_groups = -(-n_chunks // S)
    if n_groups * S > n_chunks:
        blocks = torch.cat([blocks, blocks.new_full((bsz, n_groups * S - n_chunks, C), _EMPTY_KEY)], 1)
    groups = blocks.view(bsz, n_groups, S * C)
    if S * C > cap:  # C > cap: a block holds more than a pool
        return blocks, groups.topk(cap, dim=-1, sorted=False).values
    return blocks, torch.cat([groups, groups.new_full((bsz, n_groups, cap - S * C), _EMPTY_KEY)], -1)


def _prefix_pools(blocks: Tensor, carried: Tensor, cap: int) -> Tensor:
    """[B, NC, cap] order keys, best first: pool_c = top-cap(carried u blocks[:, 0] u ... u blocks[:, c]).

    blocks: [B, NC, C] keys of the positions that become candidates at each chunk; carried: [B, cap].
    The pool before each run comes from a parallel scan over runs, then chunk j of a run pools one
    top-k of (the pool before its run u the run's first j + 1 blocks)."""
    bsz, n_chunks, C = blocks.shape
    padded, run_pools = _runs(blocks, cap)
    n_groups = run_pools.shape[1]
    S = padded.shape[1] // n_groups
    before = _inclusive_scan(torch.cat([carried[:, None], run_pools], 1), cap)[:, :n_groups]
    groups = padded.view(bsz, n_groups, S * C)
    seen = torch.arange(S * C, device=blocks.device) < (torch.arange(1, S + 1, device=blocks.device) * C)[:, None]
    inner = torch.where(seen, groups[:, :, None, :], _EMPTY_KEY)  # [B, NG, S, S * C]
    cand = torch.cat([before[:, :, None, :].expand(-1, -1, S, -1), inner], -1)
    pools = cand.topk(cap, dim=-1, sorted=True).values  # [B, NG, S, cap], best first
    return pools.view(bsz, n_groups * S, cap)[:, :n_chunks]


def _chunk_pools_triton(blocks: Tensor, carried: Tensor, cap: int, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(pos [B, NC, cap], valid [B, NC, cap], last pool's keys [B, cap]) as `_prefix_pools` then
    `_split_key` and the budget's mask, by merging sorted lists (genossa.kernels.selection_pools): the
    pools before the runs by a scan of log2(NG) launches, then one kernel merging each run's pool with
    its blocks chunk after chunk. No top-k over (cap + j C) keys per chunk, no torch op per scan level."""
    from genossa.kernels.selection_pools import chunk_pools, scan_pools

    padded, run_pools = _runs(blocks, cap)
    desc = lambda t: t.sort(-1, descending=True).values  # noqa: E731
    before = scan_pools(torch.cat([desc(carried)[:, None], desc(run_pools)], 1))[:, :run_pools.shape[1]]
    return chunk_pools(before, desc(padded), k, blocks.shape[1])


def select_causal(
    importance: Tensor,
    complexity: Tensor,
    *,
    q_start: int,
    n_queries: int,
    chunk_size: int,
    window: int,
    base: int,
    alpha: float,
    cap: int,
    score_start: int = 0,
    state: SelectionState | None = None,
    impl: str = "auto",
) -> tuple[Selection, SelectionState]:
    """Causal prefix top-k per query chunk, for queries [q_start, q_start + n_queries).

    importance, complexity: [B, Ts] for positions [score_start, score_start + Ts); they must cover
    every position from max(0, q_start - window - chunk_size) up to the last query.
    q_start must be a multiple of chunk_size, and `state` the pool left by the chunks before
    q_start (None at q_start = 0). Returns the selection and the pool after the last chunk.

    Chunk c's pool is top-cap(pool before q_start u block_0 u ... u block_c), block_c being the
    chunk_size positions that became candidates at chunk c. top-cap merging is associative, so the
    pools before each run of blocks (`_runs`) come from one parallel inclusive scan in O(log NC)
    batched steps instead of a Python loop over the NC chunks, then each chunk's pool from its run's;
    O(NC * cap) memory. impl "naive" merges by top-k calls (`_prefix_pools`), impl "triton" (auto: on
    CUDA) by Triton kernels merging sorted lists (`_chunk_pools_triton`). Both select the same keys.
    """
    impl = resolve_impl("select_causal", impl, importance)
    if q_start % chunk_size:
        raise ValueError(f"select_causal: q_start {q_start} is not a multiple of chunk_size {chunk_size}")
    if score_start > max(0, q_start - window - chunk_size):
        raise ValueError(
            f"select_causal: importance starts at {score_start}, needs {max(0, q_start - window - chunk_size)}"
        )
    bsz, n_scores = importance.shape
    device = importance.device
    if state is None:
        if q_start:
            raise ValueError("select_causal: a call starting after position 0 needs the state of the previous one")
        state = empty_selection_state(bsz, cap, device)
    n_chunks = -(-n_queries // chunk_size)
    if n_chunks == 0:
        empty = torch.zeros(bsz, 0, cap, dtype=torch.long, device=device)
        return Selection(empty, empty.bool(), empty[..., 0]), state
    i0 = q_start + torch.arange(n_chunks, device=device)[:, None] * chunk_size  # [NC, 1]
    block = torch.arange(chunk_size, device=device)

    # the block of positions that became candidates at each chunk
    new_pos = i0 - window - chunk_size + block  # [NC, chunk]
    ok = new_pos >= 0
    scores = importance.float()[:, (new_pos - score_start).clamp(0, n_scores - 1)]  # [B, NC, chunk]
    keys = _order_key(torch.where(ok, scores, -torch.inf), torch.where(ok, new_pos, -1).expand_as(scores))

    # budget from the complexity of the chunk before each query chunk
    prev = i0 - chunk_size + block  # [NC, chunk]
    seen = prev >= 0
    vals = complexity.float()[:, (prev - score_start).clamp(0, n_scores - 1)] * seen
    comp = vals.sum(-1) / seen.sum(-1).clamp_min(1)  # [B, NC]; 0 before the sequence
    k = budget(comp, base, alpha, cap)

    if impl == "triton":
        pool_pos, valid, last = _chunk_pools_triton(keys, _order_key(*state), cap, k)
        return Selection(pool_pos, valid, k), SelectionState(*_split_key(last))
    pools = _prefix_pools(keys, _order_key(*state), cap)  # best first
    pool_score, pool_pos = _split_key(pools)  # [B, NC, cap]
    valid = (torch.arange(cap, device=device) < k[..., None]) & (pool_pos >= 0)
    sel = Selection(pool_pos, valid, k)
    return sel, SelectionState(pool_score[:, -1].clone(), pool_pos[:, -1].clone())  # not views of the [B, NC, cap] pools


def select_bidirectional(
    importance: Tensor,
    complexity: Tensor,
    *,
    chunk_size: int,
    window: int,
    base: int,
    alpha: float,
    cap: int,
) -> Selection:
    """Global top-k per query chunk, excluding the chunk's local span (bidirectional mode).

    importance, complexity: [B, T]. The chunk's budget uses the complexity of its own positions.
    One global top-(cap + span) suffices: at most `span` of its entries fall in a chunk's span.
    """
    bsz, T = importance.shape
    device = importance.device
    importance, complexity = importance.float(), complexity.float()
    n_chunks = -(-T // chunk_size)
    m = min(T, cap + chunk_size + 2 * window)
    top_score, top_pos = importance.topk(m, dim=1, sorted=True)  # [B, m]
    if m < cap:
        top_pos = torch.cat([top_pos, top_pos.new_full((bsz, cap - m), -1)], dim=1)
    i0 = torch.arange(n_chunks, device=device)[:, None] * chunk_size  # [NC, 1]
    outside = (top_pos[:, None, :] >= 0) & (
        (top_pos[:, None, :] < i0 - window) | (top_pos[:, None, :] >= i0 + chunk_size + window)
    )  # [B, NC, m]
    rank = outside.long().cumsum(-1) - 1
    pad = n_chunks * chunk_size - T
    comp = torch.cat([complexity, complexity.new_zeros(bsz, pad)], 1).view(bsz, n_chunks, chunk_size).sum(-1)
    counts = torch.full((n_chunks,), chunk_size, device=device)
    counts[-1] = chunk_size - pad
    k = budget(comp / counts, base, alpha, cap)  # [B, NC]
    keep = outside & (rank < k[..., None])
    # move the kept entries first, in rank order (a stable sort on "not kept")
    order = torch.sort((~keep).to(torch.int8), dim=-1, stable=True).indices[..., :cap]
    pos = top_pos[:, None, :].expand(-1, n_chunks, -1).gather(-1, order)
    valid = keep.gather(-1, order)
    return Selection(torch.where(valid, pos, -1), valid, k)
