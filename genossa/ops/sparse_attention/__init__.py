"""Scan-informed sparse attention: the pattern (selection.py), the bias folding (bias.py) and the
public op `sparse_attention` over local spans plus per-chunk selected keys (naive.py: reference).

`impl="naive"` is the PyTorch reference; `impl="triton"` the Triton kernels (kernels/, imported
as genossa.kernels; see triton.py); `impl="auto"` picks Triton for CUDA tensors.
"""
from __future__ import annotations

from torch import Tensor

from genossa.ops.impl import IMPLS, resolve_impl

from genossa.ops.sparse_attention.bias import fold_scan_bias
from genossa.ops.sparse_attention.naive import (
    dense_masked_attention,
    dense_pattern_mask,
    gather_selected,
    naive_sparse_attention,
)
from genossa.ops.sparse_attention.selection import (
    Selection,
    SelectionState,
    budget,
    change_importance,
    combine_scales,
    empty_selection_state,
    pool_slots,
    select_bidirectional,
    select_causal,
)



def sparse_attention(
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
    impl: str = "auto",
) -> Tensor:
    """Attention over each query's local span and its chunk's selected keys.

    Args:
        q: [B, Tq, H, Dk] queries at positions q_start + [0, Tq) (q_start % chunk_size == 0).
        k, v: [B, Tk, H, Dk], [B, Tk, H, Dv] contiguous keys/values at positions k_start + [0, Tk),
            covering [max(0, q_start - window), q_start + Tq) (causal) or to the sequence end.
        sel_k, sel_v: [B, NC, K, H, Dk], [B, NC, K, H, Dv] selected keys/values per query chunk
            (NC = ceil(Tq / chunk_size)); see `gather_selected`.
        sel_pos, sel_valid: [B, NC, K] their absolute positions and validity.
        scale: logit scale, default 1/sqrt(Dk); 1.0 for keys folded by `fold_scan_bias`.
        key_bias, sel_bias: optional per-key logit terms [B, Tk, H] and [B, NC, K, H] (the
            selected keys' own, e.g. `gather_selected(key_bias, sel_pos)`), both or neither:
            logit_ij = scale * <q_i, k_j> + bias_j.

    Returns:
        [B, Tq, H, Dv] in q.dtype.
    """
    impl = resolve_impl("sparse_attention", impl, q)
    if q.dim() != 4 or k.shape[:1] + k.shape[2:] != q.shape[:1] + q.shape[2:] or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"sparse_attention: q [B, Tq, H, Dk], k [B, Tk, H, Dk], v [B, Tk, H, Dv] expected, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if sel_pos.shape != sel_valid.shape or sel_k.shape[:3] != sel_pos.shape or sel_v.shape[:3] != sel_pos.shape:
        raise ValueError("sparse_attention: sel_k, sel_v, sel_pos and sel_valid must share [B, NC, K]")
    kw = dict(chunk_size=chunk_size, window=window, causal=causal, q_start=q_start, k_start=k_start, scale=scale,
              key_bias=key_bias, sel_bias=sel_bias)
    if impl == "triton":
        from genossa.ops.sparse_attention.triton import sparse_attention_triton  # triton only when used

        return sparse_attention_triton(q, k, v, sel_k, sel_v, sel_pos, sel_valid, **kw)
    return naive_sparse_attention(q, k, v, sel_k, sel_v, sel_pos, sel_valid, **kw)


__all__ = [
    "IMPLS", "Selection", "SelectionState", "budget", "change_importance", "combine_scales", "dense_masked_attention",
    "dense_pattern_mask", "empty_selection_state", "fold_scan_bias", "gather_selected",
    "naive_sparse_attention", "pool_slots", "select_bidirectional", "select_causal", "sparse_attention",
]
