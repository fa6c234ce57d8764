"""BED3+ parsing: coordinates as written, errors naming file and line."""
import gzip

import pytest

from genossa.errors import InputFormatError
from genossa.io.bed import read_bed
from genossa.resources.make_resources import REGIONS
from genossa.sequence.intervals import Interval

LENGTHS = {"chr1": 1000, "chr2": 500}


def test_bundled_regions(regions_bed, ecoli_fasta):
    from genossa.io.fasta import FastaGenome

    intervals = read_bed(regions_bed, FastaGenome([ecoli_fasta]).lengths)
    assert intervals == [Interval(c, s, e) for c, s, e, _ in REGIONS]


def test_comments_extra_columns_and_gzip(tmp_path):
    text = "track name=x\n# comment\n\nchr1\t10\t20\tname\t0\t+\nchr2 0 500\n"
    (tmp_path / "a.bed").write_text(text)
    (tmp_path / "a.bed.gz").write_bytes(gzip.compress(text.encode()))
    expected = [Interval("chr1", 10, 20), Interval("chr2", 0, 500)]
    assert read_bed(tmp_path / "a.bed", LENGTHS) == expected
    assert read_bed(tmp_path / "a.bed.gz", LENGTHS) == expected


@pytest.mark.parametrize(
    "line, needle",
    [
        ("chrZ\t1\t10", "unknown contig 'chrZ'"),
        ("chr1\t10", "at least 3"),
        ("chr1\tten\t20", "integers"),
        ("chr1\t30\t20", "start <= end"),
        ("chr2\t0\t501", "past the end"),
    ],
)
def test_errors_name_file_and_line(tmp_path, line, needle):
    path = tmp_path / "bad.bed"
    path.write_text(f"# header\nchr1\t0\t5\n{line}\n")
    with pytest.raises(InputFormatError) as err:
        read_bed(path, LENGTHS)
    msg = str(err.value)
    assert f"{path}: line 3" in msg and needle in msg and "\n" not in msg
