"""Alphabet, tokenization, reverse complement and intervals (0-based half-open)."""
from genossa.sequence.alphabet import VOCAB_SIZE
from genossa.sequence.tokenize import (
    detokenize,
    reverse_complement,
    reverse_complement_tokens,
    soft_mask,
    tokenize,
)

__all__ = [
    "VOCAB_SIZE",
    "detokenize",
    "reverse_complement",
    "reverse_complement_tokens",
    "soft_mask",
    "tokenize",
]
