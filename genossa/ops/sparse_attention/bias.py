"""The scan-informed bias folded into one widened dot product (DESIGN.md section 5).

logits_ij = scale * <q_i, k_j> + lambda * <q_i, W s_j> + mu * <k_j, W' s_j>

Both bias terms vary with the key j (a term constant across keys for a query would cancel in the
softmax). With q~_i = [scale * q_i, lambda * q_i, 1] and k~_j = [k_j, W s_j, mu * <k_j, W' s_j>],
logits_ij = <q~_i, k~_j>: the attention stays FlashAttention-shaped with head dim 2 D + 1, and the
attention op then runs with scale 1.
"""
from __future__ import annotations

import torch
from torch import Tensor


def fold_scan_bias(
    q: Tensor, k: Tensor, ws: Tensor, wks: Tensor, lam: Tensor, mu: Tensor, scale: float
) -> tuple[Tensor, Tensor]:
    """Widen queries and keys so that <q~_i, k~_j> is the biased logit.

    q, k: [B, T, H, D]; ws = W s_j and wks = W' s_j: [B, T, H, D]; lam, mu: [H].
    Returns q~, k~: [B, T, H, 2 D + 1].
    """
    ones = q.new_ones(*q.shape[:-1], 1)
    key_bias = mu[:, None] * (k * wks).sum(-1, keepdim=True)  # [B, T, H, 1]
    q_wide = torch.cat([q * scale, lam[:, None] * q, ones], dim=-1)
    k_wide = torch.cat([k, ws, key_bias], dim=-1)
    return q_wide, k_wide
