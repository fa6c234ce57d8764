"""Genomic intervals (0-based half-open) and their tiling into fixed-length windows.

Inside genossa an interval is `Interval(contig, start, end)` with 0 <= start <= end, covering
bases start .. end-1 (BED convention). Region strings written by people are 1-based and
inclusive (`chr1:1,000-2,000` is bases 1000..2000 counted from 1) and are converted only at
the boundary, by `parse_region` / `Interval.region`.

Tiling (`tile_starts`) places windows of `length` bases every `stride` bases from the start
of an interval. Full windows come first; what happens to the tail that no full window
reaches is the `last` policy:

- "drop": the tail is not covered.
- "pad": one more window starts at the next stride position and holds the tail's bases
  (fewer than `length`; the caller pads it). An interval shorter than `length` gives one
  such partial window.
- "end_aligned": one more full window [end - length, end), overlapping its neighbour by more
  than the stride says. An interval shorter than `length` gives no window.

With stride > length the windows leave gaps; the tail rule then applies only if the next
stride position still falls inside the interval.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

import numpy as np

from genossa.errors import InputFormatError

LastWindow = Literal["drop", "pad", "end_aligned"]
LAST_WINDOW_POLICIES = ("drop", "pad", "end_aligned")


@dataclass(frozen=True, order=True)
class Interval:
    """Bases [start, end) of `contig`, 0-based half-open."""

    contig: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid interval {self.contig}:[{self.start}, {self.end}): need 0 <= start <= end")

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def region(self) -> str:
        """The 1-based inclusive region string (`chr:1,001-2,000` for [1000, 2000))."""
        return f"{self.contig}:{self.start + 1:,}-{self.end:,}"


_REGION = re.compile(r"^(?P<contig>.+?)(?::(?P<start>[\d,_]+)(?:-(?P<end>[\d,_]+))?)?$")


def parse_region(text: str, lengths: Mapping[str, int] | None = None) -> Interval:
    """Interval of a 1-based inclusive region string: `chr`, `chr:1000` or `chr:1,000-2,000`.

    `chr` alone is the whole contig (needs `lengths`); `chr:1000` is the single base 1000.
    With `lengths`, the contig must exist and the end may not pass its length.
    """
    match = _REGION.match(text.strip())
    if not match or not match["contig"]:
        raise InputFormatError(f"region {text!r}: expected CONTIG, CONTIG:POS or CONTIG:START-END (1-based)")
    contig = match["contig"]
    if lengths is not None and contig not in lengths:
        raise InputFormatError(f"region {text!r}: unknown contig {contig!r}")
    if match["start"] is None:
        if lengths is None:
            raise InputFormatError(f"region {text!r}: a whole-contig region needs the contig lengths")
        return Interval(contig, 0, lengths[contig])
    start = int(match["start"].replace(",", "").replace("_", ""))
    end = start if match["end"] is None else int(match["end"].replace(",", "").replace("_", ""))
    if start < 1 or end < start:
        raise InputFormatError(f"region {text!r}: need 1 <= start <= end (1-based, inclusive)")
    if lengths is not None and end > lengths[contig]:
        raise InputFormatError(f"region {text!r}: end {end:,} is past the end of {contig} ({lengths[contig]:,} bp)")
    return Interval(contig, start - 1, end)


def tile_starts(size: int, length: int, stride: int, last: LastWindow = "pad") -> tuple[np.ndarray, np.ndarray]:
    """Window (starts, ends) over [0, size), relative to the interval start, as int64 arrays.

    Ends are clipped to `size`, so a "pad" tail window has end - start < length.
    """
    if length < 1 or stride < 1:
        raise ValueError(f"length and stride must be >= 1, got {length}, {stride}")
    if last not in LAST_WINDOW_POLICIES:
        raise ValueError(f"last must be one of {LAST_WINDOW_POLICIES}, got {last!r}")
    n_full = 0 if size < length else (size - length) // stride + 1
    starts = np.arange(n_full, dtype=np.int64) * stride
    covered = int(starts[-1]) + length if n_full else 0
    if covered < size:
        nxt = n_full * stride
        if last == "pad" and nxt < size:
            starts = np.append(starts, nxt)
        elif last == "end_aligned" and size >= length:
            starts = np.append(starts, size - length)
    ends = np.minimum(starts + length, size)
    return starts, ends


def tile(interval: Interval, length: int, stride: int, last: LastWindow = "pad") -> list[Interval]:
    """Windows of `interval` as Intervals (see `tile_starts` for the tail policy)."""
    starts, ends = tile_starts(len(interval), length, stride, last)
    base = interval.start
    return [Interval(interval.contig, base + int(s), base + int(e)) for s, e in zip(starts, ends)]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union: overlapping or touching intervals of a contig are joined.

    Contigs keep the order of their first appearance; empty intervals are dropped.
    """
    by_contig: dict[str, list[Interval]] = {}
    for iv in intervals:
        if iv.end > iv.start:
            by_contig.setdefault(iv.contig, []).append(iv)
    merged: list[Interval] = []
    for contig, ivs in by_contig.items():
        ivs.sort()
        cur_start, cur_end = ivs[0].start, ivs[0].end
        for iv in ivs[1:]:
            if iv.start <= cur_end:
                cur_end = max(cur_end, iv.end)
            else:
                merged.append(Interval(contig, cur_start, cur_end))
                cur_start, cur_end = iv.start, iv.end
        merged.append(Interval(contig, cur_start, cur_end))
    return merged


def subtract(intervals: Iterable[Interval], remove: Iterable[Interval]) -> list[Interval]:
    """Parts of `intervals` (merged first) not covered by `remove`."""
    removed: dict[str, list[Interval]] = {}
    for iv in merge(remove):
        removed.setdefault(iv.contig, []).append(iv)
    out: list[Interval] = []
    for iv in merge(intervals):
        pos = iv.start
        for cut in removed.get(iv.contig, ()):
            if cut.end <= pos or cut.start >= iv.end:
                continue
            if cut.start > pos:
                out.append(Interval(iv.contig, pos, cut.start))
            pos = max(pos, cut.end)
        if pos < iv.end:
            out.append(Interval(iv.contig, pos, iv.end))
    return out
