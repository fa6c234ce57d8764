"""The token alphabet: one token per base.

Token ids (uint8 on the numpy side, int64 once they become a torch batch):

    A=0  C=1  G=2  T=3  N=4  PAD=5  BOS=6  EOS=7  MASK=8

A, C, G, T come first so that the complement of a base token b < 4 is 3 - b; N is its own
complement. IUPAC ambiguity codes (R Y S W K M B D H V, and U read as T) map to N or their
base. Lowercase letters are the same bases, soft-masked: they are tokenized like uppercase
and reported in a separate boolean mask.
"""
import numpy as np

A, C, G, T, N = 0, 1, 2, 3, 4
PAD, BOS, EOS, MASK = 5, 6, 7, 8
VOCAB_SIZE = 9
BASES = "ACGTN"
TOKEN_NAMES = ("A", "C", "G", "T", "N", "<pad>", "<bos>", "<eos>", "<mask>")
NUM_BASE_TOKENS = 5  # A, C, G, T, N: the tokens a model predicts

INVALID = 255  # marks a byte that is not a base in the lookup table

IUPAC_AMBIGUOUS = "RYSWKMBDHV"


def _byte_to_token() -> np.ndarray:
    table = np.full(256, INVALID, dtype=np.uint8)
    for letter, token in (("A", A), ("C", C), ("G", G), ("T", T), ("U", T), ("N", N)):
        table[ord(letter)] = token
        table[ord(letter.lower())] = token
    for letter in IUPAC_AMBIGUOUS:
        table[ord(letter)] = N
        table[ord(letter.lower())] = N
    return table


BYTE_TO_TOKEN = _byte_to_token()
BYTE_IS_LOWER = np.zeros(256, dtype=bool)
BYTE_IS_LOWER[ord("a") : ord("z") + 1] = True

# token -> uppercase letter (specials decode to a placeholder that is never a base)
TOKEN_TO_BYTE = np.frombuffer(b"ACGTN-^$?", dtype=np.uint8).copy()

COMPLEMENT_TOKEN = np.arange(VOCAB_SIZE, dtype=np.uint8)
COMPLEMENT_TOKEN[[A, C, G, T]] = [T, G, C, A]

_COMPLEMENT_BYTE = np.arange(256, dtype=np.uint8)
for _a, _b in zip("ACGTURYSWKMBDHVN", "TGCAAYRSWMKVHDBN"):
    _COMPLEMENT_BYTE[ord(_a)] = ord(_b)
    _COMPLEMENT_BYTE[ord(_a.lower())] = ord(_b.lower())
COMPLEMENT_BYTE = _COMPLEMENT_BYTE
