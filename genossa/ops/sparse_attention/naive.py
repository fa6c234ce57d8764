"""Scan-informed sparse attention in plain PyTorch: the reference of the Triton kernel.

Pattern (selection.py): the query chunk starting at i0 attends to its local span (keys
[i0 - window, i] in causal mode, [i0 - window, i0 + chunk + window) in bidirectional mode) and
to its selected keys, a list shared by the chunk's queries. Shapes:

    q [B, Tq, H, Dk]  queries at absolute positions q_start + [0, Tq); q_start % chunk == 0
    k [B, Tk, H, Dk], v [B, Tk, H, Dv]  contiguous keys at positions k_start + [0, Tk)
    sel_k [B, NC, K, H, Dk], sel_v [B, NC, K, H, Dv]  the selected keys of each of the
        NC = ceil(Tq / chunk) query chunks, gathered (O(T / chunk * K) memory)
    sel_pos [B, NC, K] their absolute positions, sel_valid [B, NC, K] bool
    key_bias [B, Tk, H], sel_bias [B, NC, K, H]  optional per-key logit terms (the scan bias,
        bias.py): logit_ij = scale * <q_i, k_j> + bias_j

A selected key is used only where it is valid, outside the chunk's local span, not after the
query (causal) and not a repeat of an earlier entry of the list, so every key counts once.
The softmax runs over two blocks, local and selected, merged by their log-sum-exp (what the
kernel does over key tiles). Memory is O(Tq * (window + chunk + K)): no (T x T) object.
`dense_pattern_mask` and `dense_masked_attention` build the same pattern as a full (T x T)
mask: they exist for tests only.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from genossa.ops.ssd.naive import compute_dtype


def gather_selected(k: Tensor, sel_pos: Tensor, k_start: int = 0) -> Tensor:
    """Keys (values, key biases) at selected positions: k [B, Tk, ...], sel_pos [B, NC, K] -> [B, NC, K, ...].

    Invalid positions (< k_start, e.g. -1) read key k_start; the attention masks them.
    """
    bsz, n_keys = k.shape[:2]
    rest = k.shape[2:]
    idx = (sel_pos - k_start).clamp(0, max(n_keys - 1, 0)).reshape(bsz, -1)  # [B, NC*K]
    out = k.gather(1, idx.view(bsz, -1, *(1,) * len(rest)).expand(-1, -1, *rest))
    return out.reshape(*sel_pos.shape, *rest)


def _softmax_block(s: Tensor, mask: Tensor, v: Tensor, equation: str) -> tuple[Tensor, Tensor, Tensor]:
    """One key block of a blocked softmax: (row max m, row sum l, unnormalized output o).

    s [..., Cq, Kb] logits, mask like s, v the block's values; m is -inf where the row of the
    block is fully masked (then l = 0 and o = 0).
    """
    s = s.masked_fill(~mask, -torch.inf)
    m = s.amax(-1).detach()  # softmax does not depend on m: no gradient path through it
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m_safe[..., None])
    return m, p.sum(-1), torch.einsum(equation, p, v)


def naive_sparse_attention(
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
    return_lse: bool = False,
):
    """Attention of each query over (its local span) u (its chunk's selected keys).

    In causal mode k must cover [max(0, q_start - window), q_start + Tq); in bidirectional mode
    k is taken to end at the end of the sequence. Returns out [B, Tq, H, Dv] in q.dtype (and the
    log-sum-exp [B, Tq, H] of the logits, fp32, with return_lse). key_bias and sel_bias go
    together (both or neither).
    """
    out_dtype = q.dtype
    cd = compute_dtype(q.dtype)
    bsz, n_q, H, Dk = q.shape
    n_keys = k.shape[1]
    C, W = chunk_size, window
    if q_start % C:
        raise ValueError(f"sparse_attention: q_start {q_start} is not a multiple of chunk_size {C}")
    if k_start > max(0, q_start - W) or (causal and k_start + n_keys < q_start + n_q):
        raise ValueError(
            f"sparse_attention: keys [{k_start}, {k_start + n_keys}) do not cover the local spans of "
            f"queries [{q_start}, {q_start + n_q}) with window {W}"
        )
    n_chunks = -(-n_q // C)
    if sel_pos.shape[:2] != (bsz, n_chunks):
        raise ValueError(f"sparse_attention: sel_pos must be [B, NC={n_chunks}, K], got {tuple(sel_pos.shape)}")
    if (key_bias is None) != (sel_bias is None):
        raise ValueError("sparse_attention: key_bias and sel_bias go together (both or neither)")
    scale = 1.0 / math.sqrt(Dk) if scale is None else scale
    right = 0 if causal else W
    span = W + C + right
    q, k, v = q.to(cd), k.to(cd), v.to(cd)
    sel_k, sel_v = sel_k.to(cd), sel_v.to(cd)

    qc = torch.cat([q, q.new_zeros(bsz, n_chunks * C - n_q, H, Dk)], 1).view(bsz, n_chunks, C, H, Dk)
    qc = qc * scale

    # local spans: the keys at absolute positions q_start - W + [0, NC*C + W + right), cut into
    # overlapping windows of `span` keys with stride C
    key_abs = q_start - W + torch.arange(n_chunks * C + W + right, device=q.device)
    present = (key_abs >= k_start) & (key_abs < k_start + n_keys)
    idx = (key_abs - k_start).clamp(0, n_keys - 1)
    k_loc = k[:, idx].unfold(1, span, C)  # [B, NC, H, Dk, span]
    v_loc = v[:, idx].unfold(1, span, C)  # [B, NC, H, Dv, span]
    present = present.unfold(0, span, C)  # [NC, span]
    rows = torch.arange(C, device=q.device)[:, None]
    cols = torch.arange(span, device=q.device)[None, :]
    stair = cols <= W + rows if causal else torch.ones(C, span, dtype=torch.bool, device=q.device)  # [C, span]
    mask_loc = present[:, None, :] & stair  # [NC, C, span]
    s_loc = torch.einsum("bclhd,bchds->bhcls", qc, k_loc)
    if key_bias is not None:
        b_loc = key_bias.to(cd)[:, idx].unfold(1, span, C)  # [B, NC, H, span]
        s_loc = s_loc + b_loc.permute(0, 2, 1, 3)[:, :, :, None]
    m1, l1, o1 = _softmax_block(s_loc, mask_loc.expand_as(s_loc), v_loc, "bhcls,bchds->bhcld")

    # selected keys: drop entries inside the local span, after the query, or repeated
    i0 = q_start + torch.arange(n_chunks, device=q.device)[:, None] * C  # [NC, 1]
    use = sel_valid & (sel_pos >= 0) & ((sel_pos < i0 - W) | (sel_pos >= i0 + C + right))
    same = (sel_pos[..., :, None] == sel_pos[..., None, :]) & use[..., None, :]  # [B, NC, K, K']
    earlier = torch.tril(torch.ones(same.shape[-1], same.shape[-1], dtype=torch.bool, device=q.device), -1)
    use = use & ~(same & earlier).any(-1)
    mask_sel = use[:, None, :, None, :]  # [B, 1, NC, 1, K]
    if causal:  # implied by sel_pos < i0 - W; kept so a caller's list can never leak
        q_abs = i0[:, :, None] + rows[None]  # [NC, C, 1]
        mask_sel = mask_sel & (sel_pos[:, None, :, None, :] <= q_abs[None, None])
    s_sel = torch.einsum("bclhd,bckhd->bhclk", qc, sel_k)
    if sel_bias is not None:  # [B, NC, K, H] -> [B, H, NC, 1, K]
        s_sel = s_sel + sel_bias.to(cd).permute(0, 3, 1, 2)[:, :, :, None]
    m2, l2, o2 = _softmax_block(s_sel, mask_sel.expand_as(s_sel), sel_v, "bhclk,bckhd->bhcld")

    m = torch.maximum(m1, m2)  # finite: each query sees at least itself
    f1, f2 = torch.exp(m1 - m), torch.exp(m2 - m)
    denom = l1 * f1 + l2 * f2
    out = (o1 * f1[..., None] + o2 * f2[..., None]) / denom[..., None]  # [B, H, NC, C, Dv]
    out = out.permute(0, 2, 3, 1, 4).reshape(bsz, n_chunks * C, H, -1)[:, :n_q].to(out_dtype)
    if not return_lse:
        return out
    lse = (m + torch.log(denom)).permute(0, 2, 3, 1).reshape(bsz, n_chunks * C, H)[:, :n_q]
    return out, lse


def dense_pattern_mask(
    T: int, sel_pos: Tensor, sel_valid: Tensor, *, chunk_size: int, window: int, causal: bool = True
) -> Tensor:
    """[B, T, T] bool: allowed[b, i, j] for queries and keys at positions [0, T) (tests only).

    The union of the local span and the chunk's selected keys, as sets, so a key counts once
    however often it is listed.
    """
    bsz = sel_pos.shape[0]
    device = sel_pos.device
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    i0 = (i // chunk_size) * chunk_size
    local = (j >= i0 - window) & ((j <= i) if causal else (j < i0 + chunk_size + window))
    chosen = torch.zeros(bsz, sel_pos.shape[1], T + 1, dtype=torch.bool, device=device)
    pos = torch.where(sel_valid & (sel_pos >= 0) & (sel_pos < T), sel_pos, T)
    chosen.scatter_(2, pos, True)
    chosen = chosen[:, :, :T][:, (torch.arange(T, device=device) // chunk_size)]  # [B, T, T]
    if causal:
        chosen = chosen & (j <= i)
    return local[None] | chosen


def dense_masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float | None = None,
                           key_bias: Tensor | None = None) -> Tensor:
    """softmax(q k^T * scale + key_bias masked) v with a full [B, T, T] mask (tests only).
    q [B, T, H, D], key_bias [B, T, H]."""
    cd = compute_dtype(q.dtype)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.einsum("bihd,bjhd->bhij", q.to(cd), k.to(cd)) * scale
    if key_bias is not None:
        s = s + key_bias.to(cd).transpose(1, 2)[:, :, None, :]
    s = s.masked_fill(~mask[:, None], -torch.inf)
    return torch.einsum("bhij,bjhd->bihd", torch.softmax(s, -1), v.to(cd)).to(q.dtype)
