"""Reverse-complement augmentation and RC-averaged inference.

tokens [B, T] in the genossa alphabet, right-padded with PAD: the reverse complement of a row
reverses its non-PAD prefix only, so padding stays at the end and positions map back one to one.
"""
from __future__ import annotations

import torch
from torch import Tensor

from genossa.models.hybrid import GenossaLM
from genossa.models.losses import align_targets
from genossa.sequence.alphabet import PAD
from genossa.sequence.tokenize import reverse_complement_tokens


def rc_index(tokens: Tensor) -> Tensor:
    """[B, T] permutation (an involution) reversing each row's non-PAD prefix."""
    T = tokens.shape[1]
    length = (tokens != PAD).long().sum(1, keepdim=True)  # right padding: the prefix length
    j = torch.arange(T, device=tokens.device)[None]
    return torch.where(j < length, length - 1 - j, j)


def reverse_complement_padded(tokens: Tensor) -> Tensor:
    """Reverse complement of each row's non-PAD prefix; PAD stays in place."""
    complemented = reverse_complement_tokens(tokens).flip(-1)  # complement only, order kept
    return complemented.gather(1, rc_index(tokens))


def rc_augment(tokens: Tensor, weights: Tensor | None = None, p: float = 0.5,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """Replace each row by its reverse complement with probability p (weights follow the bases)."""
    flip = torch.rand(tokens.shape[0], generator=generator, device=tokens.device) < p
    rc = reverse_complement_padded(tokens)
    out = torch.where(flip[:, None], rc, tokens)
    if weights is not None:
        weights = torch.where(flip[:, None], weights.gather(1, rc_index(tokens)), weights)
    return out, weights


@torch.no_grad()
def rc_average_embeddings(model: GenossaLM, tokens: Tensor, dim: int | None = None) -> Tensor:
    """[B, T, dim] mean of the embeddings of each base on both strands, aligned per position."""
    emb = model.embed(tokens, dim)
    emb_rc = model.embed(reverse_complement_padded(tokens), dim)
    idx = rc_index(tokens)
    return (emb + emb_rc.gather(1, idx[..., None].expand_as(emb_rc))) / 2


@torch.no_grad()
def sequence_log_likelihood(model: GenossaLM, tokens: Tensor) -> Tensor:
    """[B] sum over non-PAD targets of log p(next base) (causal models), in nats."""
    logits = model(tokens).logits
    logits, targets, w = align_targets(logits, tokens, causal=True)
    logp = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0]
    return (logp * w).sum(1)


@torch.no_grad()
def rc_average_log_likelihood(model: GenossaLM, tokens: Tensor) -> Tensor:
    """[B] mean of the log-likelihoods of the sequence and of its reverse complement."""
    if not model.config.causal:
        raise ValueError("sequence log-likelihoods need a causal model")
    return (sequence_log_likelihood(model, tokens) + sequence_log_likelihood(model, reverse_complement_padded(tokens))) / 2
