"""Matryoshka representation learning (Kusupati et al. 2022) over the LM head.

The final embedding z [B, T, D] has nested prefixes m in dims (config.mrl_dims); the prefix
z[..., :m] predicts through the same head truncated to its first m columns (shared weights,
"MRL-E"), and the training loss averages the prefixes' losses, so every prefix is usable alone.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from genossa.models.losses import align_targets, weighted_cross_entropy


def truncated_logits(embeddings: Tensor, weight: Tensor, bias: Tensor | None, dim: int) -> Tensor:
    """Logits [B, T, V] of the prefix embeddings[..., :dim] through weight[:, :dim] ([V, D])."""
    return F.linear(embeddings[..., :dim], weight[:, :dim], bias)


def mrl_loss(
    embeddings: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    tokens: Tensor,
    dims: tuple[int, ...],
    *,
    weights: Tensor | None = None,
    causal: bool = True,
    targets: Tensor | None = None,
) -> tuple[Tensor, dict[int, Tensor]]:
    """(mean over prefixes of the LM loss, {prefix: its loss}) for embeddings [B, T, D]."""
    per_dim = {}
    for m in dims:
        logits = truncated_logits(embeddings, weight, bias, m)
        lg, tg, w = align_targets(logits, tokens, weights, causal=causal, targets=targets)
        per_dim[m] = weighted_cross_entropy(lg, tg, w)
    total = sum(per_dim.values()) / len(per_dim)
    return total, per_dim
