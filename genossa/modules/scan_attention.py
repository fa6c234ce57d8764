"""Scan-informed sparse attention: the pattern comes from the mixer's importance, the logits carry
a bias from the mixer's scan summaries.

    q, k, v = projections of x                     [B, T, H, D]
    s_j = W_s scan_j                               [B, T, d_s]   scan summary of position j
    logit_ij = <q_i, k_j>/sqrt(D) + lambda_h <q_i, W s_j> + mu_h <k_j, W' s_j>

over the local span of i and the top-k keys selected for i's chunk (ops/sparse_attention).
Both bias terms vary with the key j, so neither cancels in the softmax; they are folded into
the keys and one fp32 bias per key (bias.py).

Ablations (`selection`): 'random' and 'strided' replace the importance fed to the selection by a
function of the absolute position only (`positional_importance`); the budget rule, the causal
prefix top-k and streaming are unchanged, so only *which* keys are chosen differs from 'scan'.

Streaming (causal): `AttentionCache` keeps the folded keys, key biases, values, importance and complexity of
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
    """[B, R, H, D] folded keys of positions [pos - R, pos), R <= window + chunk."""
    kb: Tensor
    """[B, R, H] their scan biases (fp32)."""
    v: Tensor
    """[B, R, H, D] values of the same positions."""
    importance: Tensor
    """[B, R] importance of the same positions."""
    complexity: Tensor
    """[B, R] complexity of the same positions."""
    pool: SelectionState
    """The running top-cap pool (positions < pos - R)."""
    pool_k: Tensor
    """[B, cap, H, D] folded keys of the pooled positions."""
    pool_kb: Tensor
    """[B, cap, H] their scan biases."""
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

    def _project(self, x: Tensor, scan: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q, folded k, v [B, T, H, D] and the key biases [B, T, H] (fp32 or fp64)."""
        bsz, T, _ = x.shape
        H, D = self.n_heads, self.head_dim
        q, k, v = self.qkv(x).view(bsz, T, 3, H, D).unbind(2)
        s = self.summary(scan)  # [B, T, d_s]
        ws = self.summary_q(s).view(bsz, T, H, D)
        wks = self.summary_k(s).view(bsz, T, H, D)
        q, k, kb = fold_scan_bias(q, k, ws, wks, self.lam, self.mu, scale=1.0 / math.sqrt(D), impl=self.impl)
        # under autocast the projections are 16-bit but lam (an fp32 parameter) promotes the folded
        # k to fp32 and puts the attention kernel on its fp32 path (H200: 91% of inference time, embed 10x slower)
        return q, k.to(v.dtype), v, kb

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
        q, k, v, kb = self._project(x, scan)
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
            return self.out_proj(self._attend(q, k, v, kb, sel, causal=False).flatten(2))

        start = 0 if cache is None else cache.pos
        if cache is not None:
            k = torch.cat([cache.k, k], 1)
            kb = torch.cat([cache.kb, kb], 1)
            v = torch.cat([cache.v, v], 1)
            importance = torch.cat([cache.importance, importance], 1)
            complexity = torch.cat([cache.complexity, complexity], 1)
        k_start = start - (cache.k.shape[1] if cache is not None else 0)
        sel, pool = select_causal(
            importance, complexity, q_start=start, n_queries=q.shape[1], score_start=k_start,
            state=cache.pool if cache is not None else None, impl=self.impl, **kw,
        )
        if self.record_selection:
            self.last_selection = sel
        if cache is None:
            out = self._attend(q, k, v, kb, sel, causal=True)
        else:  # selected keys may come from the cache's pool, before k
            out = self._attend_streaming(q, k, v, kb, sel, start, k_start, cache)
        out = self.out_proj(out.flatten(2))
        if not return_cache:
            return out
        keep = min(self.recent, k.shape[1])
        pool_k, pool_v, pool_kb = self._gather(pool.pos[:, None], (k, v, kb), k_start, cache)
        # copies of the recent rows: a view would keep the whole piece's k, v, ... alive with the cache
        recent = (t[:, -keep:].clone() for t in (k, kb, v, importance, complexity))
        new_cache = AttentionCache(start + q.shape[1], *recent, pool, pool_k[:, 0], pool_kb[:, 0], pool_v[:, 0])
        return out, new_cache

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, kb: Tensor, sel, *, causal: bool) -> Tensor:
        """Attention of a whole sequence (positions from 0): the Triton kernel reads the selected
        keys from k, v, kb by position; the reference takes gathered copies ([B, NC, K, H, D])."""
        kw = dict(chunk_size=self.chunk_size, window=self.window, causal=causal, scale=1.0)
        if resolve_impl("sparse_attention", self.impl, q) == "triton":
            from genossa.ops.sparse_attention.triton import sparse_attention_indexed

            # select_causal / select_bidirectional lists hold distinct positions
            return sparse_attention_indexed(q, k, v, sel.pos, sel.valid, key_bias=kb, distinct=True, **kw)
        sel_k, sel_v, sel_b = (gather_selected(t, sel.pos) for t in (k, v, kb))
        return sparse_attention(q, k, v, sel_k, sel_v, sel.pos, sel.valid, key_bias=kb, sel_bias=sel_b,
                                impl="naive", **kw)

    def _attend_streaming(self, q: Tensor, k: Tensor, v: Tensor, kb: Tensor, sel, q_start: int, k_start: int,
                          cache: AttentionCache) -> Tensor:
        """Attention of a stream's next piece: the Triton kernel reads the selected keys by row
        from [cache pool; k, v, kb]; the reference takes gathered copies."""
        kw = dict(chunk_size=self.chunk_size, window=self.window, causal=True, q_start=q_start, k_start=k_start,
                  scale=1.0)
        if resolve_impl("sparse_attention", self.impl, q) == "triton":
            from genossa.ops.sparse_attention.triton import sparse_attention_indexed

            return sparse_attention_indexed(q, k, v, sel.pos, sel.valid, key_bias=kb, pool_k=cache.pool_k,
                                            pool_v=cache.pool_v, pool_bias=cache.pool_kb, pool_pos=cache.pool.pos,
                                            distinct=True, **kw)
        sel_k, sel_v, sel_b = self._gather(sel.pos, (k, v, kb), k_start, cache)
        return sparse_attention(q, k, v, sel_k, sel_v, sel.pos, sel.valid, key_bias=kb, sel_bias=sel_b,
                                impl="naive", **kw)

    @staticmethod
    def _gather(pos: Tensor, keys: tuple[Tensor, Tensor, Tensor], k_start: int, cache: AttentionCache | None):
        """Keys, values and key biases at positions pos [B, NC, K]: from keys = (k, v, kb)
        (positions >= k_start) or else from the cache's pool. Returns [B, NC, K, H(, D)] each."""
        gathered = [gather_selected(t, pos, k_start) for t in keys]
        if cache is None or k_start <= 0:
            return gathered
        slot = pool_slots(pos, cache.pool.pos)[0]  # [B, NC, K]
        from_pool = (pos >= 0) & (pos < k_start)
        out = []
        for sel, pooled in zip(gathered, (cache.pool_k, cache.pool_v, cache.pool_kb)):
            from_pooled = gather_selected(pooled, slot)  # slots index the pool from 0
            mask = from_pool.view(*from_pool.shape, *(1,) * (sel.dim() - 3))
            out.append(torch.where(mask, from_pooled, sel))
        return out
