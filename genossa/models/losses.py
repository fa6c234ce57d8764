"""Objectives: next-base (causal) and masked-base (bidirectional) cross-entropy with per-position
weights, bits per base, and the masking of tokens for masked-LM training.

tokens, targets, weights: [B, T]; logits [B, T, V]. Cross-entropy is computed in fp32. PAD
targets never count; weights (e.g. from soft-masked bases) scale each target's term.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genossa.sequence.alphabet import MASK, NUM_BASE_TOKENS, PAD


def align_targets(
    logits: Tensor, tokens: Tensor, weights: Tensor | None = None, *, causal: bool = True, targets: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(logits, targets, weights) lined up: causal predicts tokens[t+1] from position t;
    bidirectional predicts `targets[t]` at position t. PAD targets get weight 0."""
    if causal:
        logits, targets = logits[:, :-1], tokens[:, 1:]
        weights = weights[:, 1:] if weights is not None else None
    elif targets is None:
        raise ValueError("a bidirectional (masked) loss needs `targets`")
    w = torch.ones(targets.shape, dtype=torch.float32, device=targets.device) if weights is None else weights.float()
    return logits, targets, w * (targets != PAD)


def weighted_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """sum_t w_t CE_t / sum_t w_t (0 when every weight is 0). logits [..., V], targets/weights [...]."""
    ce = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none")
    w = weights.flatten()
    return (ce * w).sum() / w.sum().clamp_min(1e-12)


def lm_loss(logits: Tensor, tokens: Tensor, weights: Tensor | None = None, *, causal: bool = True,
            targets: Tensor | None = None) -> Tensor:
    """Mean (weighted) cross-entropy in nats of the next base (causal) or of `targets` (masked)."""
    logits, targets, w = align_targets(logits, tokens, weights, causal=causal, targets=targets)
    return weighted_cross_entropy(logits, targets, w)


@torch.no_grad()
def bits_per_base(logits: Tensor, tokens: Tensor, *, causal: bool = True, targets: Tensor | None = None,
                  weights: Tensor | None = None) -> Tensor:
    """Unweighted mean -log2 p(base) over targets that are bases (A C G T N); specials excluded."""
    logits, targets, w = align_targets(logits, tokens, weights, causal=causal, targets=targets)
    is_base = (targets < NUM_BASE_TOKENS) & (w > 0)
    return weighted_cross_entropy(logits, targets, is_base.float()) / math.log(2)


def mask_tokens(tokens: Tensor, p: float = 0.15, generator: torch.Generator | None = None):
    """BERT-style corruption of base tokens for masked-LM training.

    Of the base positions chosen with probability p, 80% become MASK, 10% a random base, 10% stay.
    Returns (inputs, targets, weights): targets = tokens, weights = 1 at chosen positions else 0.
    """
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    chosen = (u < p) & (tokens < NUM_BASE_TOKENS)
    r = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    random_base = torch.randint(0, 4, tokens.shape, generator=generator, device=tokens.device)
    inputs = torch.where(chosen & (r < 0.8), torch.full_like(tokens, MASK), tokens)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_base, inputs)
    return inputs, tokens, chosen.float()
