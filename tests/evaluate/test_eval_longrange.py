"""genossa eval longrange: the recall segment is the key, distances as asked, determinism, files."""
import pytest
from click.testing import CliRunner

from genossa.cli import cli
from genossa.errors import GenossaError
from genossa.evaluate.longrange import iter_records, read_labels, recall_record, write_benchmark
from genossa.io.fasta import FastaGenome


def test_records_plant_the_key_at_the_distance():
    for rec in iter_records(5, distance=500, key_length=16, margin=20, seed=3):
        assert rec.recall == rec.key and len(rec.key) == 16
        assert rec.distance == 500 and 0 <= rec.key_start <= 20
        assert len(rec.sequence) == 500 + 16 + 40 and set(rec.sequence) <= set("ACGT")
        assert rec.sequence.count(rec.key) == 2


def test_deterministic_and_independent_of_n():
    a = list(iter_records(4, distance=100, seed=7))
    b = list(iter_records(2, distance=100, seed=7))
    assert a[:2] == b
    assert recall_record(0, distance=100, seed=8) != a[0]


def test_files_agree_with_labels(tmp_path):
    fasta, tsv = write_benchmark(tmp_path / "bench", 3, distance=200, key_length=8, margin=10, seed=1)
    rows = read_labels(tsv)
    genome = FastaGenome([fasta])
    assert [r["record"] for r in rows] == list(genome.lengths)
    for r in rows:
        assert genome.lengths[r["record"]] == r["length"]
        assert r["recall_start"] - r["key_start"] == r["distance"] == 200
        key = genome.fetch(r["record"], r["key_start"], r["key_start"] + r["key_length"])
        assert genome.fetch(r["record"], r["recall_start"], r["recall_start"] + r["key_length"]) == key


def test_copies_may_not_overlap():
    with pytest.raises(GenossaError, match="overlap"):
        list(iter_records(1, distance=10, key_length=32))


def test_cli(tmp_path):
    runner = CliRunner()
    args = ["eval", "longrange", "--out", str(tmp_path / "b"), "--n", "2", "--distance", "1000", "--seed", "5"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    first = (tmp_path / "b.fa").read_text(), (tmp_path / "b.tsv").read_text()
    assert runner.invoke(cli, args).exit_code == 0
    assert ((tmp_path / "b.fa").read_text(), (tmp_path / "b.tsv").read_text()) == first
    assert read_labels(tmp_path / "b.tsv")[1]["distance"] == 1000
    bad = runner.invoke(cli, ["eval", "longrange", "--out", str(tmp_path / "c"), "--n", "1", "--distance", "4"])
    assert bad.exit_code == 1 and "overlap" in bad.output


def test_recall_score_matches_a_one_shot_recomputation(tmp_path):
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F

    from genossa.evaluate.longrange import score_recall
    from genossa.models.config import tiny
    from genossa.models.hybrid import GenossaLM
    from genossa.sequence.tokenize import tokenize

    torch.manual_seed(0)
    GenossaLM(tiny()).save_pretrained(tmp_path / "m")
    write_benchmark(tmp_path / "b", 2, distance=40, key_length=6, margin=8, seed=2)
    streamed = score_recall(tmp_path / "m", tmp_path / "b", chunk=16, device="cpu")
    one_shot = score_recall(tmp_path / "m", tmp_path / "b", chunk=4096, device="cpu")
    assert streamed.recall_bits_per_base == pytest.approx(one_shot.recall_bits_per_base, rel=1e-4)

    model = GenossaLM.from_pretrained(tmp_path / "m").eval()
    rec = recall_record(1, distance=40, key_length=6, margin=8, seed=2)
    tokens = torch.from_numpy(tokenize(rec.sequence[:rec.recall_start + 6]).astype(np.int64))[None]
    logp = torch.log_softmax(model(tokens).logits[0], -1)
    t = torch.arange(rec.recall_start + 1, rec.recall_start + 6)
    bits = -logp[t - 1, tokens[0, t]].sum().item() / math.log(2)
    row = one_shot.rows[1]
    assert row.targets == 5 and row.recall_bits == pytest.approx(bits, rel=1e-5)
    assert row.recall_correct == int((logp[t - 1].argmax(-1) == tokens[0, t]).sum())
    c = torch.arange(rec.recall_start - 5, rec.recall_start)
    assert row.background_bits == pytest.approx(-logp[c - 1, tokens[0, c]].sum().item() / math.log(2), rel=1e-5)

    result = CliRunner().invoke(cli, ["eval", "recall", "--checkpoint", str(tmp_path / "m"), "--benchmark",
                                      str(tmp_path / "b"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "recall accuracy" in result.output
