"""VCF/BCF in, scored VCF out (pysam.VariantFile).

Reading: `read_variants` returns one light `Variant` per record, in file order, with the
record's 1-based POS, REF and ALTs as written (uppercased). A file that is missing, is not
VCF/BCF, or has a malformed record, and a record on a contig the reference lacks, are
InputFormatErrors naming the file and the record (1-based record number, CHROM:POS, ID).

Alleles: `allele_problem(ref, alt)` says why an ALT cannot be scored on the sequence
(symbolic `<DEL>`, breakend, `*`, missing `.`, letters other than ACGTN), or None.

Writing: `write_scored_vcf` copies the input record by record, in order and with every
original field, into a new bgzipped VCF whose header declares the added INFO fields; each
record gets the INFO values its index maps to. The file is written under a temporary name
in the output folder, tabix-indexed (`.tbi`), then renamed: a file at the output path is
always complete.
"""
from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pysam

from genossa.errors import GenossaError, InputFormatError
from genossa.io.fasta import quiet_htslib

_BASES = re.compile(r"^[ACGTN]+$")
OUTPUT_SUFFIXES = (".vcf.gz", ".vcf.bgz")


@dataclass(frozen=True)
class Variant:
    """One VCF record as scoring needs it (coordinates as in the file: 1-based POS)."""

    index: int
    """0-based record number in the file."""
    contig: str
    pos: int
    id: str | None
    ref: str
    alts: tuple[str, ...]

    @property
    def start(self) -> int:
        """0-based start of REF."""
        return self.pos - 1

    def where(self, path: str | Path) -> str:
        label = f" {self.id}" if self.id else ""
        return f"{path}: record {self.index + 1} ({self.contig}:{self.pos}{label})"


@dataclass(frozen=True)
class InfoField:
    """A header INFO declaration."""

    id: str
    number: str
    type: str
    description: str

    @property
    def line(self) -> str:
        return f'##INFO=<ID={self.id},Number={self.number},Type={self.type},Description="{self.description}">'


def allele_problem(ref: str, alt: str | None) -> str | None:
    """Why `alt` cannot be scored as a sequence change of `ref`, or None if it can."""
    if alt is None or alt == ".":
        return "missing"
    if alt == "*":
        return "spanning_deletion"
    if alt.startswith("<") and alt.endswith(">"):
        return "symbolic"
    if "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
        return "breakend"
    if not _BASES.match(alt.upper()):
        return "not_acgtn"
    if not _BASES.match(ref.upper()):
        return "ref_not_acgtn"
    return None


def _open(path: Path) -> pysam.VariantFile:
    if not path.exists():
        raise InputFormatError(f"{path}: VCF file not found")
    if path.is_dir():
        raise InputFormatError(f"{path}: is a folder, not a VCF file")
    try:
        with quiet_htslib():
            return pysam.VariantFile(str(path))
    except (ValueError, OSError):
        raise InputFormatError(f"{path}: not a VCF/BCF file (no '##fileformat=VCF' header, or unreadable)") from None


def _data_line(path: Path, number: int) -> str | None:
    """The `number`-th (1-based) data line of a text VCF, to show in an error (None for BCF)."""
    try:
        with open(path, "rb") as fh:
            opener = gzip.open if fh.read(2) == b"\x1f\x8b" else open
        with opener(path, "rt", errors="replace") as fh:
            seen = 0
            for line in fh:
                if line.startswith("#"):
                    continue
                seen += 1
                if seen == number:
                    return line.rstrip("\n")
    except (OSError, EOFError, UnicodeDecodeError):
        return None
    return None


def _malformed(path: Path, number: int, err: Exception) -> InputFormatError:
    line = _data_line(path, number) if path.suffix != ".bcf" else None
    shown = f": {line[:80]!r}" if line else ""
    why = " ".join(str(err).split()) or type(err).__name__
    return InputFormatError(f"{path}: record {number}: malformed VCF record ({why}){shown}")


def _records(vf: pysam.VariantFile, path: Path):
    """(index, pysam record) of each record of an open file; a malformed one is an InputFormatError."""
    index = 0
    with quiet_htslib():
        it = iter(vf)
        while True:
            try:
                record = next(it)
            except StopIteration:
                return
            except (OSError, ValueError) as err:
                raise _malformed(path, index + 1, err) from None
            if record.pos < 1:
                raise _malformed(path, index + 1, ValueError(f"POS must be >= 1, got {record.pos}"))
            yield index, record
            index += 1


def iter_records(path: str | Path):
    """(index, pysam record) of each record in file order; malformed records raise InputFormatError."""
    path = Path(path)
    vf = _open(path)
    try:
        yield from _records(vf, path)
    finally:
        vf.close()


def read_variants(path: str | Path, lengths: Mapping[str, int] | None = None) -> list[Variant]:
    """Every record of a VCF/BCF as a `Variant`, in file order.

    With `lengths` (the reference's contigs), a record on an unknown contig is an error.
    """
    path = Path(path)
    variants = []
    for index, record in iter_records(path):
        v = Variant(
            index=index, contig=record.chrom, pos=record.pos, id=record.id,
            ref=(record.ref or "").upper(), alts=tuple(a.upper() if a else "." for a in (record.alts or ())),
        )
        if lengths is not None and v.contig not in lengths:
            known = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
            raise InputFormatError(f"{v.where(path)}: contig {v.contig!r} is not in the reference (it has {known})")
        variants.append(v)
    return variants


def output_path_ok(out: str | Path) -> Path:
    out = Path(out)
    if not str(out).endswith(OUTPUT_SUFFIXES):
        raise InputFormatError(f"{out}: the scored VCF is bgzipped and tabix-indexed: its name must end with .vcf.gz")
    if out.is_dir():
        raise InputFormatError(f"{out}: is a folder")
    return out


def write_scored_vcf(
    source: str | Path,
    out: str | Path,
    fields: Iterable[InfoField],
    values: Callable[[int], Mapping[str, object] | None],
    header_lines: Iterable[str] = (),
) -> Path:
    """Copy `source` to `out` (bgzip VCF + .tbi), adding INFO `fields` to the header and, to
    record i, the INFO values `values(i)`: a mapping of ID -> value, where None removes an
    entry of that ID (one left by an earlier scoring of the file); None adds nothing.
    """
    source, out = Path(source), output_path_ok(out)
    fields = list(fields)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.vcf.gz")
    tbi = Path(str(tmp) + ".tbi")
    try:
        # htslib declares tags a record uses but the header lacks ("Dummy") while parsing, and
        # exits the process when a record carrying one is translated to another header: so the
        # records are written with the reader's own header, given every such line up front
        # (from a first pass) and the new declarations.
        first_pass = _open(source)
        for _ in _records(first_pass, source):
            pass
        reader = _open(source)
        try:
            have = {str(r) for r in reader.header.records}
            for rec in first_pass.header.records:
                if str(rec) not in have:
                    reader.header.add_line(str(rec).rstrip("\n"))
            first_pass.close()
            for line in header_lines:
                reader.header.add_line(line)
            for f in fields:
                if f.id not in reader.header.info:
                    reader.header.add_line(f.line)
            with quiet_htslib(), pysam.VariantFile(str(tmp), "wz", header=reader.header) as writer:
                for index, record in enumerate(reader):
                    for key, value in (values(index) or {}).items():
                        if value is not None:
                            record.info[key] = value
                        elif key in record.info:
                            del record.info[key]
                    writer.write(record)
        finally:
            reader.close()
        publish_indexed_vcf(tmp, out, "scored VCF")
    finally:
        for leftover in (tmp, tbi):
            if leftover.exists():
                leftover.unlink()
    return out


def publish_indexed_vcf(tmp: Path, out: Path, what: str) -> None:
    """Tabix-index the finished bgzipped VCF `tmp`, then move index and file to `out`.

    The index is moved first, so a VCF under its final name always has its index; a failure
    leaves `out` untouched (the caller removes `tmp` and its index).
    """
    try:
        pysam.tabix_index(str(tmp), preset="vcf", force=True)
    except (OSError, pysam.utils.SamtoolsError) as err:
        raise GenossaError(f"{out}: cannot index the {what} ({' '.join(str(err).split())})") from None
    os.replace(str(tmp) + ".tbi", str(out) + ".tbi")
    os.replace(tmp, out)
