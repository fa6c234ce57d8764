"""BAM/CRAM reads: filter counts match the fixture generator's read list; regions; CRAM; bad files."""
import shutil
from collections import Counter

import pysam
import pytest

from genossa.errors import InputFormatError
from genossa.io.bam import ReadFilter, detect_alignment_format, iter_reads
from genossa.resources.make_resources import simulate_reads
from genossa.sequence.intervals import Interval


@pytest.fixture(scope="module")
def sim_reads():
    return simulate_reads()


def _expected(reads, *, min_length=0, min_mapq=0, exclude=0, region=None):
    """Names the filter should keep, from the known read list alone."""
    out = []
    for r in reads:
        if region is not None:
            if r.contig != region.contig or not (r.start < region.end and r.start + max(len(r.sequence), 2000) > region.start):
                continue
        if r.flag & exclude or r.mapq < min_mapq or not r.sequence or len(r.sequence) < min_length:
            continue
        out.append(r.name)
    return out


FILTERS = [
    dict(),
    dict(min_length=1000),
    dict(min_mapq=10),
    dict(min_length=5000, min_mapq=30),
    dict(secondary=False, supplementary=False, duplicates=False, qcfail=False),
    dict(secondary=False),
    dict(qcfail=False, duplicates=False),
]


@pytest.mark.parametrize("options", FILTERS)
def test_filters_match_known_reads(reads_bam, sim_reads, options):
    flt = ReadFilter.from_options(**options)
    stats = Counter()
    kept = [r.query_name for r in iter_reads(reads_bam, read_filter=flt, stats=stats)]
    assert kept == _expected(sim_reads, min_length=flt.min_length, min_mapq=flt.min_mapq, exclude=flt.exclude_flags)
    assert stats["seen"] == len(sim_reads) == 52
    assert stats["kept"] == len(kept)


def test_fixture_contents(sim_reads):
    kinds = Counter(r.name.rsplit("_", 1)[0] for r in sim_reads)
    assert kinds == {"long": 8, "short": 30, "secondary": 2, "supplementary": 2, "duplicate": 2,
                     "qcfail": 2, "lowmapq": 3, "unmapped": 2, "secondary_noseq": 1}
    assert all(5000 <= len(r.sequence) <= 20000 for r in sim_reads if r.name.startswith("long"))


def test_sequences_round_trip(reads_bam, sim_reads):
    by_name = {r.name: r for r in sim_reads}
    for read in iter_reads(reads_bam, read_filter=ReadFilter(exclude_flags=0)):
        assert read.query_sequence == by_name[read.query_name].sequence


def test_region_query(reads_bam, sim_reads):
    region = Interval("NC_007779.1", 50_000, 150_000)
    kept = [r.query_name for r in iter_reads(reads_bam, region=region, read_filter=ReadFilter(exclude_flags=0))]
    assert sorted(kept) == sorted(_expected(sim_reads, region=region))
    same = [r.query_name for r in iter_reads(reads_bam, region="NC_007779.1:50,001-150,000", read_filter=ReadFilter(exclude_flags=0))]
    assert same == kept


def test_unindexed_streams_but_refuses_regions(tmp_path, reads_bam, sim_reads):
    copy = tmp_path / "reads.bam"
    shutil.copy(reads_bam, copy)
    assert [r.query_name for r in iter_reads(copy)] == _expected(sim_reads, exclude=0xF00)
    with pytest.raises(InputFormatError, match="needs an index"):
        list(iter_reads(copy, region="NC_007779.1:1-1000"))


def test_cram_with_reference(tmp_path, reads_bam, ecoli_fasta):
    cram = tmp_path / "reads.cram"
    with pysam.AlignmentFile(str(reads_bam)) as src, \
            pysam.AlignmentFile(str(cram), "wc", template=src, reference_filename=str(ecoli_fasta)) as out:
        for read in src:
            out.write(read)
    assert detect_alignment_format(cram) == "cram"
    from_bam = [(r.query_name, r.query_sequence) for r in iter_reads(reads_bam)]
    assert [(r.query_name, r.query_sequence) for r in iter_reads(cram, reference=ecoli_fasta)] == from_bam
    with pytest.raises(InputFormatError, match="reference"):
        list(iter_reads(cram))


@pytest.mark.parametrize("name", ["fasta", "bed", "empty", "gzip"])
def test_not_a_bam(tmp_path, ecoli_fasta, regions_bed, name):
    import gzip

    path = {"fasta": ecoli_fasta, "bed": regions_bed, "empty": tmp_path / "e.bam", "gzip": tmp_path / "g.bam"}[name]
    if name == "empty":
        path.write_bytes(b"")
    if name == "gzip":
        path.write_bytes(gzip.compress(b"hello\tworld\n"))
    with pytest.raises(InputFormatError) as err:
        list(iter_reads(path))
    msg = str(err.value)
    assert str(path) in msg and "not a BAM" in msg and "\n" not in msg
