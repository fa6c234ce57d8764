"""Reads from BAM/CRAM (and SAM) files with pysam.AlignmentFile, filtered.

Reads stream in file order, indexed or not (`until_eof=True`, unmapped reads included);
a region query (0-based half-open Interval, or a 1-based region string) needs an index
(.bai/.csi/.crai) and returns the reads overlapping the region. CRAM is decoded with its
reference FASTA. Unaligned BAMs (no @SQ lines) are fine.

A read's sequence is `query_sequence` as stored: for mapped reads this is the reference's
forward strand (flag 0x10 says the read itself was reverse-complemented), soft clips kept,
hard clips absent. Records without a stored sequence (SEQ '*', common for secondary
alignments) are skipped.
"""
from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import pysam

from genossa.errors import InputFormatError
from genossa.io.fasta import quiet_htslib
from genossa.sequence.intervals import Interval, parse_region

UNMAPPED = 0x4
SECONDARY = 0x100
QCFAIL = 0x200
DUPLICATE = 0x400
SUPPLEMENTARY = 0x800


@dataclass(frozen=True)
class ReadFilter:
    """Which reads are kept: a read passes if it has none of `exclude_flags`, MAPQ >= min_mapq
    and at least `min_length` bases of stored sequence."""

    min_length: int = 0
    min_mapq: int = 0
    exclude_flags: int = SECONDARY | SUPPLEMENTARY | DUPLICATE | QCFAIL

    @classmethod
    def from_options(
        cls,
        *,
        min_length: int = 0,
        min_mapq: int = 0,
        secondary: bool = True,
        supplementary: bool = True,
        duplicates: bool = True,
        qcfail: bool = True,
    ) -> "ReadFilter":
        """A filter excluding the flag classes whose argument is True."""
        flags = (SECONDARY if secondary else 0) | (SUPPLEMENTARY if supplementary else 0)
        flags |= (DUPLICATE if duplicates else 0) | (QCFAIL if qcfail else 0)
        return cls(min_length=min_length, min_mapq=min_mapq, exclude_flags=flags)

    def reject_reason(self, read: pysam.AlignedSegment) -> str | None:
        """None if the read passes, else 'flag', 'mapq', 'no_sequence' or 'length'."""
        if read.flag & self.exclude_flags:
            return "flag"
        if read.mapping_quality < self.min_mapq:
            return "mapq"
        length = read.query_length  # 0 when SEQ is '*'
        if length == 0:
            return "no_sequence"
        if length < self.min_length:
            return "length"
        return None


AlignmentFormat = Literal["bam", "cram", "sam"]


def detect_alignment_format(path: str | Path) -> AlignmentFormat:
    """'bam', 'cram' or 'sam' from the file's magic bytes; anything else is an error."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: alignment file not found")
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head[:4] == b"CRAM":
        return "cram"
    if head[:2] == b"\x1f\x8b":
        try:
            inner = zlib.decompressobj(31).decompress(head, 4)
        except zlib.error:
            inner = b""
        if inner[:4] == b"BAM\x01":
            return "bam"
        kind = "a gzip file (not BAM)"
    elif head[:1] == b"@" or (head and head.split(b"\n")[0].count(b"\t") >= 10):
        return "sam"
    else:
        kind = "empty" if not head else f"starts with {head[:12]!r}"
    raise InputFormatError(f"{path}: not a BAM/CRAM/SAM file ({kind})")


def open_alignments(path: str | Path, reference: str | Path | None = None) -> pysam.AlignmentFile:
    """An open pysam.AlignmentFile (CRAM needs `reference`, its FASTA)."""
    path = Path(path)
    fmt = detect_alignment_format(path)
    if fmt == "cram" and not reference:
        raise InputFormatError(f"{path}: a CRAM file needs its reference FASTA (data.reference / --reference)")
    kwargs = {"check_sq": False}
    if fmt == "cram":
        kwargs["reference_filename"] = str(reference)
    try:
        with quiet_htslib():
            return pysam.AlignmentFile(str(path), "rc" if fmt == "cram" else "rb" if fmt == "bam" else "r", **kwargs)
    except (OSError, ValueError, IndexError) as err:
        raise InputFormatError(f"{path}: cannot open as {fmt.upper()} ({' '.join(str(err).split()) or type(err).__name__})") from None


def iter_reads(
    path: str | Path,
    *,
    reference: str | Path | None = None,
    region: Interval | str | None = None,
    read_filter: ReadFilter = ReadFilter(),
    stats: Counter | None = None,
) -> Iterator[pysam.AlignedSegment]:
    """Reads passing `read_filter`, in file order (or overlapping `region`, which needs an index).

    `stats`, if given, counts 'seen', 'kept' and each reject reason.
    """
    path = Path(path)
    with open_alignments(path, reference) as fh:
        if region is None:
            records = fh.fetch(until_eof=True)
        else:
            if isinstance(region, str):
                region = parse_region(region, dict(zip(fh.references, fh.lengths)))
            if not fh.has_index():
                raise InputFormatError(f"{path}: a region query needs an index (.bai/.csi/.crai); run `samtools index`")
            if region.contig not in fh.references:
                raise InputFormatError(f"{path}: unknown contig {region.contig!r} in region {region.region}")
            records = fh.fetch(region.contig, region.start, region.end)
        try:
            with quiet_htslib():
                for read in records:
                    reason = read_filter.reject_reason(read)
                    if stats is not None:
                        stats["seen"] += 1
                        stats[reason or "kept"] += 1
                    if reason is None:
                        yield read
        except (OSError, ValueError) as err:
            raise InputFormatError(f"{path}: truncated or corrupt alignment file ({' '.join(str(err).split())})") from None
