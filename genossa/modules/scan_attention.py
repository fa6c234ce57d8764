"""Scan-informed sparse attention: the pattern comes from the mixer's importance, the logits carry
a bias from the mixer's scan summaries.

    q, k, v = projections of x                     [B, T, H, D]
    s_j = W_s scan_j                               [B, T, d_s]   scan summary of position j
    logit_ij = <q_i, k_j>/sqrt(D) + lambda_h <q_i, W s_j> + mu_h <k_j, W' s_j>

over the local span of i and the top-k keys selected for i's chunk (ops/sparse_attention).
Both bias terms vary with the key j, so neither cancels in the softmax; they are folded into
one widened dot product (bias.py).

Ablations (`selection`): 'random' and 'strided' replace the importance fed to the selection by a
function of the absolute position only (`positional_importance`); the budget rule, the causal
prefix top-k and streaming are unchanged, so only *which* keys are chosen differs from 'scan'.

Streaming (causal): `AttentionCache` keeps the widened keys, values, importance and complexity of
the last window + chunk positions (still in local spans or not yet selectable) and the running
top-cap pool with its keys and values: O(window + chunk + cap) per layer, whatever the length.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from genossa.ops.impl import resolve_impl
from genossa.ops.sparse_attention import (
    SelectionState,
    change_importance,
    combine_scales,
    fold_scan_bias,
    gather_selected,
    pool_slots,
    select_bidirectional,
    select_causal,
    sparse_attention,
)


SELECTIONS = ("scan", "change", "random", "strided")

_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32) as int64, exactly (16-bit halves: no int64 overflow)."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def positional_importance(kind: str, start: int, length: int, *, stride: int, device=None) -> Tensor:
    """[length] fp32 importance of the absolute positions [start, start + length) for the selection
    ablations; a pure function of the position, so it is causal and equal in streaming and one shot.

    random:  a fixed 32-bit integer hash of the position (lowbias32, Wellons), its top 24 bits
             scaled to [0, 1) (exact in fp32; positions wrap modulo 2**32).
    strided: 1 + position // stride on positions that are multiples of `stride`, 0 elsewhere: the
             most recent strided candidates rank first, every other position after them.
    """
    pos = torch.arange(start, start + length, device=device, dtype=torch.int64)
    if kind == "random":
        x = (pos + 0x9E3779B9) & _MASK32  # the offset is the fixed seed: position 0 hashes to nonzero
        x = _mul32(x ^ (x >> 16), 0x7FEB352D)
        x = _mul32(x ^ (x >> 15), 0x846CA68B)
        x = x ^ (x >> 16)
        return (x >> 8).float() / float(1 << 24)
    if kind == "strided":
        return torch.where(pos % stride == 0, (pos // stride + 1).float(), 0.0)
    raise ValueError(f"positional_importance: kind must be 'random' or 'strided', got {kind!r}")


class AttentionCache(NamedTuple):
    """Streaming state of one causal attention layer after `pos` tokens."""

    pos: int
    """Tokens seen so far (a multiple of the query chunk until the last call)."""
    k: Tensor
    """[B, R, H, 2D+1] widened keys of positions [pos - R, pos), R <= window + chunk."""
    v: Tensor
    """[B, R, H, D] values of the same positions."""
    importance: Tensor
    """[B, R] importance of the same positions."""
    complexity: Tensor
    """[B, R] complexity of the same positions."""
    pool: SelectionState
    """The running top-cap pool (positions < pos - R)."""
    pool_k: Tensor
    """[B, cap, H, 2D+1] widened keys of the pooled positions."""
    pool_v: Tensor
    """[B, cap, H, D] values of the pooled positions."""


class ScanSparseAttention(nn.Module):
    def __init__(
        self,
        d_model: int,
        scan_dim: int,
        n_heads: int,
        head_dim: int,
        *,
        summary_dim: int,
        window: int,
        chunk_size: int,
        topk_base: int,
        topk_alpha: float,
        topk_cap: int,
        causal: bool = True,
        bias_init: float = 0.1,
        selection: str = "scan",
        impl: str = "auto",
    ):
        super().__init__()
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        self.selection = selection  # what ranks the candidates: the scan's importance or a positional ablation
        self.n_heads, self.head_dim = n_heads, head_dim
        self.window, self.chunk_size = window, chunk_size
        self.topk_base, self.topk_alpha, self.topk_cap = topk_base, topk_alpha, topk_cap
        self.causal = causal
        self.impl = impl  # attention implementation: auto / naive / triton (ops.sparse_attention)
        # diagnostics (genossa eval recall): with record_selection, each forward keeps its Selection
        self.record_selection = False
        self.last_selection = None
        self.qkv = nn.Linear(d_model, 3 * n_heads * head_dim, bias=False)
        self.summary = nn.Linear(scan_dim, summary_dim)  # S: per-position scan summaries
        self.summary_q = nn.Linear(summary_dim, n_heads * head_dim, bias=False)  # W, compared with q_i
        self.summary_k = nn.Linear(summary_dim, n_heads * head_dim, bias=False)  # W', compared with k_j
        self.lam = nn.Parameter(torch.full((n_heads,), float(bias_init)))
        self.mu = nn.Parameter(torch.full((n_heads,), float(bias_init)))
        self.out_proj = nn.Linear(n_heads * head_dim, d_model, bias=False)

    @property
    def recent(self) -> int:
        """Positions the streaming cache keeps in full: window + chunk."""
        return self.window + self.chunk_size

    def _project(self, x: Tensor, scan: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bsz, T, _ = x.shape
        H, D = self.n_heads, self.head_dim
        q, k, v = self.qkv(x).view(bsz, T, 3, H, D).unbind(2)
        s = self.summary(scan)  # [B, T, d_s]
        ws = self.summary_q(s).view(bsz, T, H, D)
        wks = self.summary_k(s).view(bsz, T, H, D)
        q_wide, k_wide = fold_scan_bias(q, k, ws, wks, self.lam, self.mu, scale=1.0 / math.sqrt(D))
        # under autocast the projections are 16-bit but lam, mu (fp32 parameters) promote the folded
        # q, k to fp32 and put the attention kernel on its fp32 path (H200: 91% of inference time, embed 10x slower)
        return q_wide.to(v.dtype), k_wide.to(v.dtype), v

    def forward(
        self,
        x: Tensor,
        scan: Tensor,
        norm: Tensor,
        change: Tensor,
        cache: AttentionCache | None = None,
        return_cache: bool = False,
    ):
        """x [B, T, d_model] (normed block input), scan [B, T, E] (mixer's scan output),
        norm / change [B, T, S] (mixer's per-scale state norms).

        Returns out [B, T, d_model], and the new cache with return_cache (causal only).
        """
        q, k, v = self._project(x, scan)
        importance, complexity = combine_scales(norm, change)
        if self.selection == "change":  # rank by what each position adds to the state, not its size
            importance = change_importance(change)
        elif self.selection != "scan":  # ablation: rank by position only (the budget keeps the scan's complexity)
            first = cache.pos if cache is not None else 0
            importance = positional_importance(
                self.selection, first, importance.shape[1], stride=self.window, device=importance.device
            ).expand_as(importance)
        kw = dict(chunk_size=self.chunk_size, window=self.window, base=self.topk_base, alpha=self.topk_alpha,
                  cap=self.topk_cap)
        if not self.causal:
            if cache is not None or return_cache:
                raise ValueError("bidirectional attention sees the whole sequence: it cannot stream")
            sel = select_bidirectional(importance, complexity, **kw)
            if self.record_selection:
                self.last_selection = sel
            return self.out_proj(self._attend(q, k, v, sel, causal=False).flatten(2))

        start = 0 if cache is None else cache.pos
        if cache is not None:
            k = torch.cat([cache.k, k], 1)
            v = torch.cat([cache.v, v], 1)
            importance = torch.cat([cache.importance, importance], 1)
            complexity = torch.cat([cache.complexity, complexity], 1)
        k_start = start - (cache.k.shape[1] if cache is not None else 0)
        sel, pool = select_causal(
            importance, complexity, q_start=start, n_queries=q.shape[1], score_start=k_start,
            state=cache.pool if cache is not None else None, **kw,
        )
        if self.record_selection:
            self.last_selection = sel
        if cache is None:
            out = self._attend(q, k, v, sel, causal=True)
        else:  # selected keys may come from the cache's pool, before k
            out = self._attend_streaming(q, k, v, sel, start, k_start, cache)
        out = self.out_proj(out.flatten(2))
        if not return_cache:
            return out
        keep = min(self.recent, k.shape[1])
        pool_k, pool_v = self._gather(pool.pos[:, None], k, v, k_start, cache)
        new_cache = AttentionCache(
            start + q.shape[1], k[:, -keep:], v[:, -keep:], importance[:, -keep:], complexity[:, -keep:],
            pool, pool_k[:, 0], pool_v[:, 0],
        )
        return out, new_cache

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, sel, *, causal: bool) -> Tensor:
        """Attention of a whole sequence (positions from 0): the Triton kernel reads the selected
        keys from k, v by position; the reference takes gathered copies ([B, NC, K, H, D])."""
        kw = dict(chunk_size=self.chunk_size, window=self.window, causal=causal, scale=1.0)
        if resolve_impl("sparse_attention", self.impl, q) == "triton":
            from genossa.ops.sparse_attention.triton import sparse_attention_indexed

            return sparse_attention_indexed(q, k, v, sel.pos, sel.valid, **kw)
        return sparse_attention(q, k, v, gather_selected(k, sel.pos), gather_selected(v, sel.pos), sel.pos,
                                sel.valid, impl="naive", **kw)

    def _attend_streaming(self, q: Tensor, k: Tensor, v: Tensor, sel, q_start: int, k_start: int,
                          cache: AttentionCache) -> Tensor:
        """Attention of a stream's next piece: the Triton kernel reads the selected keys by row
        from [cache pool; k, v]; the reference takes gathered copies."""
        kw = dict(chunk_size=self.chunk_size, window=self.window, causal=True, q_start=q_start, k_start=k_start,
                  scale=1.0)
        if resolve_impl("sparse_attention", self.impl, q) == "triton":
            from genossa.ops.sparse_attention.triton import sparse_attention_indexed

            return sparse_attention_indexed(q, k, v, sel.pos, sel.valid, pool_k=cache.pool_k, pool_v=cache.pool_v,
                                            pool_pos=cache.pool.pos, **kw)
        sel_k, sel_v = self._gather(sel.pos, k, v, k_start, cache)
        return sparse_attention(q, k, v, sel_k, sel_v, sel.pos, sel.valid, impl="naive", **kw)

    @staticmethod
    def _gather(pos: Tensor, k: Tensor, v: Tensor, k_start: int, cache: AttentionCache | None):
        """Keys/values at positions pos [B, NC, K]: from k, v (positions >= k_start) or else from
        the cache's pool. Returns [B, NC, K, H, Dk], [B, NC, K, H, Dv]."""
        sel_k, sel_v = gather_selected(k, pos, k_start), gather_selected(v, pos, k_start)
        if cache is None or k_start <= 0:
            return sel_k, sel_v
        bsz, n_chunks, n_sel = pos.shape
        slot = pool_slots(pos, cache.pool.pos)[0].reshape(bsz, -1)  # [B, NC*K]
        H = k.shape[2]
        pooled_k = cache.pool_k.gather(1, slot[..., None, None].expand(-1, -1, H, cache.pool_k.shape[-1]))
        pooled_v = cache.pool_v.gather(1, slot[..., None, None].expand(-1, -1, H, cache.pool_v.shape[-1]))
        from_pool = ((pos >= 0) & (pos < k_start))[..., None, None]
        sel_k = torch.where(from_pool, pooled_k.view(bsz, n_chunks, n_sel, H, -1), sel_k)
        sel_v = torch.where(from_pool, pooled_v.view(bsz, n_chunks, n_sel, H, -1), sel_v)
        return sel_k, sel_v
