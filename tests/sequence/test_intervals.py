"""Interval parsing at the 1-based boundary, tiling policies, merge and subtract."""
import itertools

import pytest

from genossa.errors import InputFormatError
from genossa.sequence.intervals import Interval, merge, parse_region, subtract, tile, tile_starts

LENGTHS = {"chr1": 10_000, "chrM": 500}


def test_parse_region_one_based_inclusive():
    assert parse_region("chr1:1,000-2,000") == Interval("chr1", 999, 2000)
    assert parse_region("chr1:1-10000", LENGTHS) == Interval("chr1", 0, 10_000)
    assert parse_region("chr1:5") == Interval("chr1", 4, 5)
    assert parse_region("chrM", LENGTHS) == Interval("chrM", 0, 500)
    assert Interval("chr1", 999, 2000).region == "chr1:1,000-2,000"


@pytest.mark.parametrize("text", ["chr1:0-10", "chr1:20-10", "chrX:1-5", "chr1:1-10001", ":1-5"])
def test_parse_region_errors(text):
    with pytest.raises(InputFormatError):
        parse_region(text, LENGTHS)


def _expected_count(size, length, stride, last):
    """Window count from arithmetic alone (independent of tile_starts)."""
    full = 0 if size < length else (size - length) // stride + 1
    reached = (full - 1) * stride + length if full else 0
    tail = reached < size
    if last == "pad":
        return full + (tail and full * stride < size)
    if last == "end_aligned":
        return full + (tail and size >= length)
    return full


@pytest.mark.parametrize("last", ["drop", "pad", "end_aligned"])
def test_tile_counts_and_coverage(last):
    for size, length, stride in itertools.product([0, 1, 7, 99, 100, 101, 250, 1000], [1, 10, 100], [1, 3, 10, 100, 150]):
        starts, ends = tile_starts(size, length, stride, last)
        assert starts.size == _expected_count(size, length, stride, last), (size, length, stride, last)
        assert ((ends - starts) <= length).all() and (starts >= 0).all() and (ends <= size).all()
        full = ends - starts == length
        if last != "pad":
            assert full.all()
        else:  # only the last window may be short
            assert full[:-1].all()
        if stride <= length and size >= 1 and last != "drop" and starts.size:
            # no gaps and the end is reached: the windows cover [0, size) exactly
            assert starts[0] == 0 and ends[-1] == size
            assert (starts[1:] <= ends[:-1]).all()


def test_tile_examples():
    assert [(w.start, w.end) for w in tile(Interval("c", 10, 260), 100, 100, "pad")] == [(10, 110), (110, 210), (210, 260)]
    assert [(w.start, w.end) for w in tile(Interval("c", 10, 260), 100, 100, "end_aligned")] == [(10, 110), (110, 210), (160, 260)]
    assert [(w.start, w.end) for w in tile(Interval("c", 10, 260), 100, 100, "drop")] == [(10, 110), (110, 210)]
    assert tile(Interval("c", 0, 50), 100, 100, "end_aligned") == []
    assert tile(Interval("c", 0, 50), 100, 100, "pad") == [Interval("c", 0, 50)]


def test_merge_and_subtract():
    ivs = [Interval("b", 5, 10), Interval("a", 0, 10), Interval("a", 5, 20), Interval("a", 20, 25), Interval("a", 30, 30)]
    assert merge(ivs) == [Interval("b", 5, 10), Interval("a", 0, 25)]
    cut = subtract([Interval("a", 0, 100)], [Interval("a", 10, 20), Interval("a", 15, 30), Interval("a", 90, 200), Interval("b", 0, 5)])
    assert cut == [Interval("a", 0, 10), Interval("a", 30, 90)]
