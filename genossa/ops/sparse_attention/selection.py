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
chunk, and top-cap(A u B) = top-cap(top-cap(A) u B), so a running pool of `cap` entries
(`SelectionState`) gives exactly the prefix top-k of every chunk in O(T / chunk * (cap + chunk))
time and O(cap) state: that pool, plus the last window + chunk positions, is all that streaming
inference keeps. Bidirectional mode ranks all positions at once (a global top-k, per chunk
without its own local span).

Importance and complexity come from the mixer's per-scale state norms (`combine_scales`). The
budget is k = min(cap, base + floor(alpha * complexity)) with complexity in [0, 1).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


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


def budget(complexity: Tensor, base: int, alpha: float, cap: int) -> Tensor:
    """k = min(cap, base + floor(alpha * complexity)) as int64, same shape as complexity."""
    return (base + torch.floor(alpha * complexity.clamp_min(0))).clamp(max=cap).long()


def empty_selection_state(batch: int, cap: int, device: torch.device | str | None = None) -> SelectionState:
    """An empty pool (nothing selected yet)."""
    return SelectionState(
        torch.full((batch, cap), -torch.inf, device=device), torch.full((batch, cap), -1, dtype=torch.long, device=device)
    )


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
) -> tuple[Selection, SelectionState]:
    """Causal prefix top-k per query chunk, for queries [q_start, q_start + n_queries).

    importance, complexity: [B, Ts] for positions [score_start, score_start + Ts); they must cover
    every position from max(0, q_start - window - chunk_size) up to the last query.
    q_start must be a multiple of chunk_size, and `state` the pool left by the chunks before
    q_start (None at q_start = 0). Returns the selection and the pool after the last chunk.
    """
    if q_start % chunk_size:
        raise ValueError(f"select_causal: q_start {q_start} is not a multiple of chunk_size {chunk_size}")
    if score_start > max(0, q_start - window - chunk_size):
        raise ValueError(
            f"select_causal: importance starts at {score_start}, needs {max(0, q_start - window - chunk_size)}"
        )
    bsz, n_scores = importance.shape
    device = importance.device
    importance, complexity = importance.float(), complexity.float()
    if state is None:
        if q_start:
            raise ValueError("select_causal: a call starting after position 0 needs the state of the previous one")
        state = empty_selection_state(bsz, cap, device)
    n_chunks = -(-n_queries // chunk_size)
    block = torch.arange(chunk_size, device=device)
    pool_score, pool_pos = state
    all_pos, all_valid, all_k = [], [], []
    for c in range(n_chunks):
        i0 = q_start + c * chunk_size
        # the block of positions that became candidates since the previous chunk
        new_pos = i0 - window - chunk_size + block  # [chunk]
        ok = new_pos >= 0
        idx = (new_pos - score_start).clamp(0, n_scores - 1)
        new_score = torch.where(ok, importance[:, idx], -torch.inf)  # [B, chunk]
        cand_score = torch.cat([pool_score, new_score], dim=1)
        cand_pos = torch.cat([pool_pos, torch.where(ok, new_pos, -1).expand(bsz, -1)], dim=1)
        pool_score, order = cand_score.topk(cap, dim=1, sorted=True)
        pool_pos = cand_pos.gather(1, order)

        prev = i0 - chunk_size + block
        seen = prev >= 0
        if seen.any():
            vals = complexity[:, (prev - score_start).clamp(0, n_scores - 1)]
            comp = (vals * seen).sum(1) / seen.sum()
        else:
            comp = complexity.new_zeros(bsz)
        k = budget(comp, base, alpha, cap)  # [B]
        all_k.append(k)
        all_pos.append(pool_pos)
        all_valid.append((torch.arange(cap, device=device) < k[:, None]) & (pool_pos >= 0))
    if n_chunks == 0:
        empty = torch.zeros(bsz, 0, cap, dtype=torch.long, device=device)
        return Selection(empty, empty.bool(), empty[..., 0]), SelectionState(pool_score, pool_pos)
    sel = Selection(torch.stack(all_pos, 1), torch.stack(all_valid, 1), torch.stack(all_k, 1))
    return sel, SelectionState(pool_score, pool_pos)


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
