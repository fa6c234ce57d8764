"""BED3+ interval files (plain or gzip): include/exclude regions for windowing.

Columns 1-3 are contig, start, end in BED's own 0-based half-open coordinates; further
columns are ignored. Blank lines and `#`, `track` and `browser` lines are skipped. A
malformed line, or (given the genome's contig lengths) an unknown contig or an end past the
contig, is an InputFormatError naming the file and the 1-based line number.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Mapping

from genossa.errors import InputFormatError
from genossa.sequence.intervals import Interval


def read_bed(path: str | Path, lengths: Mapping[str, int] | None = None) -> list[Interval]:
    """Intervals of a BED file, in file order (not merged)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        raw = gzip.open(path, "rb").read() if gz else path.read_bytes()
    except FileNotFoundError:
        raise InputFormatError(f"{path}: BED file not found") from None
    except (OSError, EOFError) as err:
        raise InputFormatError(f"{path}: cannot read BED file ({err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFormatError(f"{path}: not a BED file (binary content)") from None
    intervals = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        where = f"{path}: line {number}"
        if len(fields) < 3:
            raise InputFormatError(f"{where}: expected at least 3 tab-separated columns (contig, start, end), got {line!r}")
        contig = fields[0]
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            raise InputFormatError(f"{where}: start and end must be integers, got {fields[1]!r}, {fields[2]!r}") from None
        if not 0 <= start <= end:
            raise InputFormatError(f"{where}: need 0 <= start <= end, got {start}, {end}")
        if lengths is not None:
            if contig not in lengths:
                known = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
                raise InputFormatError(f"{where}: unknown contig {contig!r} (the genome has {known})")
            if end > lengths[contig]:
                raise InputFormatError(f"{where}: end {end:,} is past the end of {contig} ({lengths[contig]:,} bp)")
        intervals.append(Interval(contig, start, end))
    return intervals
