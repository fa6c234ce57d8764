"""Tokenizer round trips, reverse-complement involution, IUPAC/N/lowercase handling."""
import numpy as np
import pytest
import torch

from genossa.errors import InputFormatError
from genossa.sequence import alphabet
from genossa.sequence.tokenize import detokenize, reverse_complement, reverse_complement_tokens, soft_mask, tokenize


def _random_seq(n=2000, seed=0, alphabet_letters="ACGTNacgtn"):
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(alphabet_letters), size=n))


def test_round_trip_keeps_bases_and_case():
    seq = _random_seq()
    tokens = tokenize(seq)
    assert tokens.dtype == np.uint8 and tokens.shape == (len(seq),)
    assert detokenize(tokens) == seq.upper()
    assert detokenize(tokens, soft_mask(seq)) == seq


def test_token_ids():
    assert tokenize("ACGTN").tolist() == [alphabet.A, alphabet.C, alphabet.G, alphabet.T, alphabet.N]
    assert tokenize("acgtn").tolist() == [0, 1, 2, 3, 4]
    assert soft_mask("AcGt").tolist() == [False, True, False, True]


def test_iupac_codes_map_to_n_and_u_to_t():
    codes = "RYSWKMBDHV"
    assert (tokenize(codes) == alphabet.N).all()
    assert (tokenize(codes.lower()) == alphabet.N).all()
    assert soft_mask(codes.lower()).all()
    assert tokenize("Uu").tolist() == [alphabet.T, alphabet.T]


@pytest.mark.parametrize("bad, pos", [("ACGTX", 5), ("AC GT", 3), ("ACG-T", 4), ("AC\nGT", 3)])
def test_illegal_character_names_source_record_position(bad, pos):
    with pytest.raises(InputFormatError) as err:
        tokenize(bad, source="g.fa", record="chr2", offset=100)
    msg = str(err.value)
    assert "g.fa" in msg and "chr2" in msg and f"position {100 + pos}" in msg
    assert "\n" not in msg


def test_reverse_complement_string_involution_and_case():
    seq = _random_seq(alphabet_letters="ACGTNRYacgtnry")
    assert reverse_complement(reverse_complement(seq)) == seq
    assert reverse_complement("AACGTt") == "aACGTT"
    assert reverse_complement(b"ACGN") == b"NCGT"


def test_reverse_complement_tokens_numpy_and_torch():
    seq = _random_seq(seed=1)
    tokens = tokenize(seq)
    rc = reverse_complement_tokens(tokens)
    assert np.array_equal(rc, tokenize(reverse_complement(seq)))
    assert np.array_equal(reverse_complement_tokens(rc), tokens)
    batch = torch.from_numpy(np.stack([tokens, tokens[::-1].copy()]).astype(np.int64))  # [2, L]
    rc_t = reverse_complement_tokens(batch)
    assert rc_t.dtype == torch.int64 and rc_t.shape == batch.shape
    assert np.array_equal(rc_t[0].numpy(), rc)
    assert torch.equal(reverse_complement_tokens(rc_t), batch)
