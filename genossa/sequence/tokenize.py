"""Text <-> tokens, vectorized with 256-entry numpy lookup tables (no per-base Python).

Input is bytes or str of bases; output is a uint8 token array (see alphabet.py) and, when
asked, a boolean soft-mask array (True where the base was lowercase). Any byte that is not
a base (or IUPAC code) raises InputFormatError naming the source, record and 0-based position.
"""
from __future__ import annotations

import numpy as np

from genossa.errors import InputFormatError
from genossa.sequence import alphabet


def _as_bytes(seq: str | bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(seq, np.ndarray):
        return seq.view(np.uint8)
    if isinstance(seq, str):
        seq = seq.encode("ascii", errors="replace")
    return np.frombuffer(seq, dtype=np.uint8)


def tokenize(
    seq: str | bytes | np.ndarray,
    *,
    source: str = "<sequence>",
    record: str | None = None,
    offset: int = 0,
) -> np.ndarray:
    """Tokens (uint8, one per base) of `seq`.

    `source`, `record` and `offset` (the 0-based position of seq[0] in the record) only
    serve the error message for an illegal character.
    """
    raw = _as_bytes(seq)
    tokens = alphabet.BYTE_TO_TOKEN[raw]
    bad = np.flatnonzero(tokens == alphabet.INVALID)
    if bad.size:
        i = int(bad[0])
        char = chr(raw[i]) if 32 < raw[i] < 127 else f"\\x{raw[i]:02x}"
        where = f"{source}: record {record!r}" if record is not None else source
        raise InputFormatError(
            f"{where}: illegal character {char!r} at position {offset + i + 1} (1-based); "
            f"allowed are A C G T N, IUPAC codes and their lowercase"
        )
    return tokens


def soft_mask(seq: str | bytes | np.ndarray) -> np.ndarray:
    """Boolean mask, True where the base is lowercase (soft-masked, e.g. repeats)."""
    return alphabet.BYTE_IS_LOWER[_as_bytes(seq)]


def detokenize(tokens: np.ndarray, soft_mask: np.ndarray | None = None) -> str:
    """Uppercase text of `tokens` (lowercase where `soft_mask` is True)."""
    raw = alphabet.TOKEN_TO_BYTE[np.asarray(tokens, dtype=np.uint8)]
    if soft_mask is not None:
        raw = np.where(soft_mask & (raw >= ord("A")) & (raw <= ord("Z")), raw + 32, raw).astype(np.uint8)
    return raw.tobytes().decode("ascii")


def reverse_complement_tokens(tokens):
    """Reverse complement of a token array along its last axis (numpy or torch).

    Specials are kept (reversed in place with their neighbours), N stays N.
    """
    try:
        import torch
    except ImportError:  # torch is a hard dependency; this only keeps numpy use cheap
        torch = None
    if torch is not None and isinstance(tokens, torch.Tensor):
        table = torch.as_tensor(alphabet.COMPLEMENT_TOKEN, device=tokens.device).to(tokens.dtype)
        return table[tokens.long()].flip(-1)
    tokens = np.asarray(tokens)
    return alphabet.COMPLEMENT_TOKEN[tokens][..., ::-1].astype(tokens.dtype)


def reverse_complement(seq: str | bytes) -> str | bytes:
    """Reverse complement of a DNA string (case and IUPAC codes kept)."""
    raw = alphabet.COMPLEMENT_BYTE[_as_bytes(seq)][::-1].tobytes()
    return raw.decode("ascii") if isinstance(seq, str) else raw
