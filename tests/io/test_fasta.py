"""FASTA reading: compressions agree, indexes are built/rebuilt/refused, bad files are one-line errors."""
import gzip
import os
import warnings

import pysam
import pytest

from genome_helpers import random_genome, write_fasta
from genossa.errors import InputFormatError
from genossa.io.fasta import FastaGenome, detect_compression, ensure_index, read_fai, stream_records


@pytest.fixture
def read_only(tmp_path):
    """A folder made read-only (mode 555) after setup; genossa honours the mode even as root."""
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    folder.chmod(0o755)


def _one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_bundled_genome(ecoli_fasta):
    genome = FastaGenome([ecoli_fasta])
    assert detect_compression(ecoli_fasta) == "bgzip"
    assert genome.lengths == {"NC_007779.1": 300_000, "NC_007779.1_2000000_2100000": 100_000}
    assert genome.fetch("NC_007779.1", 0, 10) == "AGCTTTTCAT"


def test_plain_gzip_bgzip_agree(tmp_path, small_genome):
    genomes = {}
    for kind in ("plain", "gzip", "bgzip"):
        path = write_fasta(tmp_path / f"g_{kind}.fa{'' if kind == 'plain' else '.gz'}", small_genome, kind, line_width=70)
        assert detect_compression(path) == kind
        genomes[kind] = FastaGenome([path])
        assert genomes[kind].lengths == {k: len(v) for k, v in small_genome.items()}
    assert not genomes["gzip"].indexed(0) and genomes["plain"].indexed(0) and genomes["bgzip"].indexed(0)
    assert dict(stream_records(genomes["gzip"].paths[0])) == small_genome
    for name, seq in small_genome.items():
        for kind in ("plain", "bgzip"):
            assert genomes[kind].fetch(name, 0, len(seq)) == seq
            assert genomes[kind].fetch(name, 17, 501) == seq[17:501]


def test_multi_file_genome_and_duplicate_names(tmp_path, small_genome):
    a = write_fasta(tmp_path / "a.fa", {"chr1": small_genome["chr1"]})
    b = write_fasta(tmp_path / "b.fa.gz", {"chr2": small_genome["chr2"]}, "bgzip")
    genome = FastaGenome([a, b])
    assert list(genome.contigs) == ["chr1", "chr2"] and genome.contigs["chr2"].file == 1
    assert genome.fetch("chr2", 0, 50) == small_genome["chr2"][:50]
    dup = write_fasta(tmp_path / "c.fa", {"chr1": "ACGT"})
    with pytest.raises(InputFormatError) as err:
        FastaGenome([a, dup])
    _one_line_error(err, "c.fa", "chr1", "a.fa")


def test_index_built_when_missing(tmp_path, small_genome):
    path = write_fasta(tmp_path / "g.fa.gz", small_genome, "bgzip")
    assert not (tmp_path / "g.fa.gz.fai").exists()
    entries = ensure_index(path)
    assert [e.name for e in entries] == list(small_genome)
    assert (tmp_path / "g.fa.gz.fai").exists() and (tmp_path / "g.fa.gz.gzi").exists()


def test_missing_index_in_read_only_folder(read_only, small_genome):
    path = write_fasta(read_only / "g.fa", small_genome)
    read_only.chmod(0o555)
    with pytest.raises(InputFormatError) as err:
        FastaGenome([path])
    _one_line_error(err, str(path), "no index", "not writable")


def _make_stale(path, records, kind):
    """Index `path`, then rewrite it with other record lengths and age the index."""
    FastaGenome([path])
    write_fasta(path, records, kind)
    old = path.stat().st_mtime - 3600
    for suffix in (".fai", ".gzi"):
        index = path.with_name(path.name + suffix)
        if index.exists():
            os.utime(index, (old, old))


@pytest.mark.parametrize("kind", ["plain", "bgzip"])
def test_stale_index_is_rebuilt_when_writable(tmp_path, small_genome, kind):
    path = write_fasta(tmp_path / "g.fa", small_genome, kind)
    changed = {"chr1": small_genome["chr1"][:3000], "chrX": small_genome["chr2"]}
    _make_stale(path, changed, kind)
    genome = FastaGenome([path])
    assert genome.lengths == {"chr1": 3000, "chrX": len(small_genome["chr2"])}
    assert genome.fetch("chrX", 0, 100) == small_genome["chr2"][:100]
    assert [e.name for e in read_fai(str(path) + ".fai")] == ["chr1", "chrX"]


@pytest.mark.parametrize("kind", ["plain", "bgzip"])
def test_stale_index_in_read_only_folder(read_only, small_genome, kind):
    path = write_fasta(read_only / "g.fa", small_genome, kind)
    _make_stale(path, {"chr1": small_genome["chr1"][:3000]}, kind)
    read_only.chmod(0o555)
    with pytest.raises(InputFormatError) as err:
        FastaGenome([path])
    _one_line_error(err, str(path), "stale index")


def test_stale_index_same_lengths_different_layout(read_only, small_genome):
    # the same records with another line width: lengths agree, offsets do not
    path = write_fasta(read_only / "g.fa", small_genome, line_width=60)
    FastaGenome([path])
    write_fasta(path, small_genome, line_width=50)
    read_only.chmod(0o555)
    with pytest.raises(InputFormatError) as err:
        FastaGenome([path])
    _one_line_error(err, "stale index")


def test_older_but_consistent_index_is_used_read_only(read_only, small_genome):
    path = write_fasta(read_only / "g.fa", small_genome)
    FastaGenome([path])
    old = path.stat().st_mtime - 3600
    os.utime(str(path) + ".fai", (old, old))
    read_only.chmod(0o555)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        genome = FastaGenome([path])
    assert genome.fetch("chr3", 0, 20) == small_genome["chr3"][:20]
    assert any("older than the file" in str(w.message) for w in caught)


@pytest.mark.parametrize("kind", ["plain", "gzip", "bgzip"])
def test_empty_file(tmp_path, kind):
    path = write_fasta(tmp_path / "empty.fa", {}, kind)
    with pytest.raises(InputFormatError) as err:
        FastaGenome([path])
    _one_line_error(err, str(path), "empty")


@pytest.mark.parametrize("kind", ["plain", "gzip", "bgzip"])
def test_no_header(tmp_path, kind):
    plain = tmp_path / "nohdr.txt"
    plain.write_text("ACGTACGT\nACGT\n")
    path = tmp_path / "nohdr.fa"
    if kind == "plain":
        plain.rename(path)
    elif kind == "gzip":
        path.write_bytes(gzip.compress(plain.read_bytes()))
    else:
        pysam.tabix_compress(str(plain), str(path), force=True)
    with pytest.raises(InputFormatError) as err:
        FastaGenome([path])
    _one_line_error(err, str(path), "'>' header")


@pytest.mark.parametrize("kind", ["gzip", "bgzip"])
def test_truncated_gzip(tmp_path, kind):
    # large enough that the first kilobytes decompress: the error comes from the body
    records = random_genome(seed=3, lengths=(300_000,))
    path = write_fasta(tmp_path / "g.fa.gz", records, kind)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(InputFormatError) as err:
        FastaGenome([path])
    _one_line_error(err, str(path), "truncated")


def test_not_found(tmp_path):
    with pytest.raises(InputFormatError) as err:
        FastaGenome([tmp_path / "nope.fa"])
    _one_line_error(err, "nope.fa", "not found")


def test_gzip_cannot_fetch(tmp_path, small_genome):
    path = write_fasta(tmp_path / "g.fa.gz", small_genome, "gzip")
    genome = FastaGenome([path])
    with pytest.raises(InputFormatError) as err:
        genome.fetch("chr1", 0, 10)
    _one_line_error(err, "bgzip")


def test_handles_are_not_pickled(ecoli_fasta):
    import pickle

    genome = FastaGenome([ecoli_fasta])
    genome.fetch("NC_007779.1", 0, 10)
    assert genome._handles
    clone = pickle.loads(pickle.dumps(genome))
    assert clone._handles == {}
    assert clone.fetch("NC_007779.1", 0, 10) == genome.fetch("NC_007779.1", 0, 10)
