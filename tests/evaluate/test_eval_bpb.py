"""genossa eval bpb: values recomputed from the logits, the uniform model, RC symmetry, the CLI."""
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genossa.cli import cli
from genossa.errors import GenossaError
from genossa.evaluate.bpb import evaluate_bpb, window_bits
from genossa.models.config import tiny
from genossa.models.hybrid import GenossaLM
from genossa.models.losses import bits_per_base
from genossa.sequence.tokenize import reverse_complement, tokenize


def _random_dna(rng, n):
    return "".join(rng.choice(list("ACGT"), n))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model")
    GenossaLM(tiny()).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def uniform_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("uniform")
    model = GenossaLM(tiny())
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: p = 1/9 over the whole vocabulary
    model.save_pretrained(d)
    return d


def _fasta(path, records):
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records))
    return path


def test_uniform_model_scores_log2_of_the_vocabulary(tmp_path, uniform_dir):
    rng = np.random.default_rng(1)
    fa = _fasta(tmp_path / "g.fa", [("a", _random_dna(rng, 100)), ("b", _random_dna(rng, 37))])
    result = evaluate_bpb(uniform_dir, [fa], window=32, device="cpu")
    # softmax over all 9 tokens (A C G T N and 4 specials) with equal logits
    assert result.bits_per_base == pytest.approx(math.log2(9), abs=1e-6)
    # windows 32,32,32,4 and 32,5: each window's first base is context only
    assert result.total.windows == 6
    assert result.total.forward.targets == (31 * 3 + 3) + (31 + 4)


def test_bits_match_an_independent_recomputation(tmp_path, model_dir):
    rng = np.random.default_rng(2)
    seqs = [_random_dna(rng, 48), _random_dna(rng, 20)]
    fa = _fasta(tmp_path / "g.fa", [("x", seqs[0]), ("y", seqs[1])])
    result = evaluate_bpb(model_dir, [fa], window=48, device="cpu", batch_size=1)
    model = GenossaLM.from_pretrained(model_dir).eval()
    bits, n = 0.0, 0
    for seq in seqs:
        tokens = torch.from_numpy(tokenize(seq).astype(np.int64))[None]
        bpb = bits_per_base(model(tokens).logits, tokens).item()
        bits += bpb * (len(seq) - 1)
        n += len(seq) - 1
    assert result.total.forward.targets == n
    assert result.bits_per_base == pytest.approx(bits / n, rel=1e-5)
    assert [r.contig for r in result.rows] == ["x", "y"]


def test_n_targets_are_not_scored(model_dir):
    model = GenossaLM.from_pretrained(model_dir).eval()
    tokens = torch.from_numpy(tokenize("ACGTNNACGT").astype(np.int64))[None]
    _, n = window_bits(model, tokens)
    assert n.item() == 7  # 9 targets, two of them N


def test_rc_average_is_strand_symmetric(tmp_path, model_dir):
    seq = _random_dna(np.random.default_rng(3), 60)
    fwd = evaluate_bpb(model_dir, [_fasta(tmp_path / "f.fa", [("s", seq)])], window=64, rc_average=True, device="cpu")
    rev = evaluate_bpb(model_dir, [_fasta(tmp_path / "r.fa", [("s", reverse_complement(seq))])], window=64,
                       rc_average=True, device="cpu")
    assert fwd.bits_per_base == pytest.approx(rev.bits_per_base, rel=1e-6)
    assert fwd.total.forward.bits_per_base == pytest.approx(rev.total.reverse.bits_per_base, rel=1e-6)
    assert fwd.bits_per_base == pytest.approx(
        (fwd.total.forward.bits_per_base + fwd.total.reverse.bits_per_base) / 2, rel=1e-12)


def test_regions_and_max_windows(tmp_path, uniform_dir):
    fa = _fasta(tmp_path / "g.fa", [("a", _random_dna(np.random.default_rng(4), 200))])
    bed = tmp_path / "r.bed"
    bed.write_text("a\t10\t50\na\t40\t74\n")  # merged: a:10-74 = 64 bases
    result = evaluate_bpb(uniform_dir, [fa], regions=bed, window=16, device="cpu")
    assert (result.total.windows, result.total.forward.targets) == (4, 4 * 15)
    few = evaluate_bpb(uniform_dir, [fa], window=16, max_windows=3, device="cpu")
    assert few.total.windows == 3


def test_cli(tmp_path, uniform_dir):
    fa = _fasta(tmp_path / "g.fa", [("chr", _random_dna(np.random.default_rng(5), 40))])
    result = CliRunner().invoke(cli, ["eval", "bpb", "--checkpoint", str(uniform_dir), "--fasta", str(fa),
                                      "--window", "20", "--rc-average", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    total = [line for line in result.output.splitlines() if line.startswith("total")][0].split()
    assert total[1:3] == ["2", "38"] and float(total[3]) == pytest.approx(math.log2(9), abs=1e-4)


def test_cli_errors_are_one_line(tmp_path):
    fa = _fasta(tmp_path / "g.fa", [("chr", "ACGT")])
    result = CliRunner().invoke(cli, ["eval", "bpb", "--checkpoint", str(tmp_path), "--fasta", str(fa)])
    assert result.exit_code == 1
    assert "not an exported genossa model" in result.output and "Traceback" not in result.output
