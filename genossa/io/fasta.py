"""FASTA genomes: plain, gzip and bgzip, one or many files, indexed or streamed.

A `FastaGenome` is the union of the records of its files (record names must be unique
across files). Sequences come back as `str` of the file's letters (case kept: lowercase is
soft-masked); coordinates are 0-based half-open.

- plain and bgzip files are read by random access (pysam.FastaFile) through their `.fai`
  (and `.gzi` for bgzip). A missing index is built next to the file when its folder is
  writable, else it is an error. A stale index (older than the file, or whose offsets and
  lengths disagree with the file) is rebuilt the same way, else it is an error.
- plain gzip cannot be indexed (htslib needs bgzip): such a file is streamed record by
  record with pysam.FastxFile. Its record lengths come from one streaming pass when the
  genome is opened.

pysam handles are opened lazily in the process that reads (one per DataLoader worker) and
are never pickled. Every user-input problem is an InputFormatError naming the file (and the
record); htslib's own stderr chatter is silenced while genossa reports the error itself.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import pysam

from genossa.errors import InputFormatError

Compression = Literal["plain", "gzip", "bgzip"]

# an index older than its file by more than this is stale; copies and checkouts write a file
# and its index within the same second or two in either order
_MTIME_SLACK_S = 2.0


@contextlib.contextmanager
def quiet_htslib():
    """Silence htslib's stderr messages while genossa turns failures into one-line errors."""
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def detect_compression(path: str | Path) -> Compression:
    """'bgzip' (gzip with the BGZF 'BC' extra field), 'gzip', or 'plain', from the first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    # gzip header: FLG bit 2 = FEXTRA; BGZF puts subfield 'BC' first in the extra field
    if len(head) >= 16 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzip"
    return "gzip"


def _open_text(path: Path, compression: Compression):
    return open(path, "rb") if compression == "plain" else gzip.open(path, "rb")


def check_fasta_start(path: str | Path, compression: Compression | None = None) -> None:
    """Error unless the file's first non-blank character is a '>' header."""
    path = Path(path)
    compression = compression or detect_compression(path)
    try:
        with _open_text(path, compression) as fh:
            head = fh.read(4096).lstrip()
    except (OSError, EOFError, zlib.error) as err:
        raise InputFormatError(f"{path}: truncated or corrupt {compression} file ({err})") from None
    if not head:
        raise InputFormatError(f"{path}: empty FASTA file (no records)")
    if head[:1] != b">":
        first = head.splitlines()[0][:20].decode("ascii", "replace")
        raise InputFormatError(f"{path}: not a FASTA file: expected a '>' header line first, found {first!r}")


# --- .fai / .gzi ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FaiEntry:
    """One line of a .fai index: bases, byte offset of the first base, bases/bytes per line."""

    name: str
    length: int
    offset: int
    line_bases: int
    line_width: int

    def end_offset(self) -> int:
        """Offset just past the record's last base (its final newline excluded)."""
        if self.length == 0:
            return self.offset
        full, rest = divmod(self.length, self.line_bases)
        if rest == 0:
            return self.offset + (full - 1) * self.line_width + self.line_bases
        return self.offset + full * self.line_width + rest


def read_fai(path: str | Path) -> list[FaiEntry]:
    """Entries of a .fai file (raises ValueError if it is malformed)."""
    entries = []
    with open(path) as fh:
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5:
                raise ValueError(f"{path}: malformed .fai line {line!r}")
            name, length, offset, line_bases, line_width = fields[0], *map(int, fields[1:5])
            entries.append(FaiEntry(name, length, offset, line_bases, line_width))
    return entries


def _read_gzi(path: Path) -> list[tuple[int, int]]:
    data = path.read_bytes()
    (count,) = struct.unpack_from("<Q", data, 0)
    if len(data) != 8 + 16 * count:
        raise ValueError(f"{path}: malformed .gzi")
    flat = struct.unpack_from(f"<{2 * count}Q", data, 8)
    return list(zip(flat[0::2], flat[1::2]))


def _uncompressed_tail(path: Path, gzi: list[tuple[int, int]]) -> tuple[int, bytes]:
    """(uncompressed offset, bytes) of the file from the last block listed in the .gzi."""
    coffset, uoffset = gzi[-1] if gzi else (0, 0)
    with open(path, "rb") as fh:
        fh.seek(coffset)
        return uoffset, gzip.decompress(fh.read())


def _index_paths(path: Path, compression: Compression) -> list[Path]:
    fai = Path(str(path) + ".fai")
    return [fai, Path(str(path) + ".gzi")] if compression == "bgzip" else [fai]


def _stale_reason(path: Path, compression: Compression) -> str | None:
    """Why the existing index of `path` cannot be trusted, or None if it is consistent."""
    fai = Path(str(path) + ".fai")
    try:
        entries = read_fai(fai)
        if compression == "bgzip":
            gzi = _read_gzi(Path(str(path) + ".gzi"))
    except (ValueError, OSError) as err:
        return f"unreadable index ({err})"
    if not entries:
        return "the index lists no records"
    if compression == "plain":
        size = path.stat().st_size
        with open(path, "rb") as fh:
            for entry in entries:
                if entry.offset > size:
                    return f"record {entry.name!r} starts past the end of the file"
                fh.seek(max(entry.offset - 1, 0))
                if entry.offset == 0 or fh.read(1) != b"\n":
                    return f"record {entry.name!r} does not start after a header line"
            end = entries[-1].end_offset()
            fh.seek(end)
            tail = fh.read()
        if end > size or tail.strip():
            return f"record lengths disagree with the file size ({size:,} bytes)"
    else:
        if gzi and gzi[-1][0] >= path.stat().st_size:
            return ".gzi lists blocks past the end of the file"
        try:
            tail_start, tail = _uncompressed_tail(path, gzi)
        except (OSError, EOFError, zlib.error) as err:
            return f"cannot read the end of the file ({err})"
        end = entries[-1].end_offset()
        if end < tail_start or end > tail_start + len(tail) or tail[end - tail_start :].strip():
            return f"record lengths disagree with the file size ({tail_start + len(tail):,} bases of text)"
    newest_index = min(p.stat().st_mtime for p in _index_paths(path, compression))
    if newest_index + _MTIME_SLACK_S < path.stat().st_mtime:
        return "older than the file"
    return None


def _folder_writable(folder: Path) -> bool:
    # root passes os.access everywhere; a folder whose mode forbids writing is still treated
    # as read-only so that shared reference folders are never written into
    if not os.access(folder, os.W_OK):
        return False
    return os.geteuid() != 0 or bool(folder.stat().st_mode & 0o200)


def _build_index(path: Path) -> None:
    try:
        with quiet_htslib():
            pysam.faidx(str(path))
    except pysam.utils.SamtoolsError as err:
        detail = " ".join(str(err).split())
        if "different line length" in detail or "line length" in detail:
            why = "lines of a record have different lengths"
        elif "Format error" in detail or "unexpected" in detail:
            why = "malformed FASTA (no '>' header or stray text)"
        elif "truncated" in detail.lower() or "Failed to read" in detail or "failed" in detail:
            why = "truncated or corrupt file"
        else:
            why = detail
        raise InputFormatError(f"{path}: cannot build a FASTA index: {why}") from None


def ensure_index(path: str | Path) -> list[FaiEntry]:
    """The .fai entries of a plain or bgzip FASTA, building or rebuilding a missing or stale index.

    Raises InputFormatError if the index is missing or stale and the folder is not writable,
    or if the file cannot be indexed.
    """
    path = Path(path)
    compression = detect_compression(path)
    if compression == "gzip":
        raise InputFormatError(f"{path}: plain gzip cannot be indexed; recompress it with bgzip or stream it")
    missing = [p for p in _index_paths(path, compression) if not p.exists()]
    reason = f"no index ({', '.join(p.name for p in missing)})" if missing else _stale_reason(path, compression)
    if reason is None:
        return read_fai(Path(str(path) + ".fai"))
    writable = _folder_writable(path.parent)
    if not writable:
        if not missing and reason == "older than the file":
            # offsets and lengths were verified: the index still describes the file exactly
            warnings.warn(f"{path}: its index is older than the file but consistent with it; using it")
            return read_fai(Path(str(path) + ".fai"))
        what = "no index" if missing else f"stale index: {reason}"
        raise InputFormatError(
            f"{path}: {what}, and its folder is not writable to build one "
            f"(run `samtools faidx` on a writable copy)"
        )
    check_fasta_start(path, compression)
    _build_index(path)
    if missing:
        return read_fai(Path(str(path) + ".fai"))
    again = _stale_reason(path, compression)
    if again is not None and again != "older than the file":
        raise InputFormatError(f"{path}: index rebuilt but still inconsistent ({again})")
    return read_fai(Path(str(path) + ".fai"))


# --- streaming -----------------------------------------------------------------------------


def stream_records(path: str | Path) -> Iterator[tuple[str, str]]:
    """(name, sequence) of each record in file order, for any compression (pysam.FastxFile)."""
    path = Path(path)
    check_fasta_start(path)
    compression = detect_compression(path)
    try:
        with quiet_htslib(), pysam.FastxFile(str(path)) as fh:
            for record in fh:
                yield record.name, record.sequence or ""
    except (ValueError, OSError) as err:
        raise InputFormatError(f"{path}: truncated or corrupt {compression} FASTA ({' '.join(str(err).split())})") from None


# --- genomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contig:
    name: str
    length: int
    file: int
    """Index of the file in `FastaGenome.paths`."""


class FastaGenome:
    """The records of one or more FASTA files, read by random access where possible.

    `contigs` lists every record (file order, then record order). `fetch` needs an indexed
    file (plain or bgzip); records of plain-gzip files are read with `stream(file)`.
    """

    def __init__(self, paths: list[str | Path] | tuple[str | Path, ...]):
        if not paths:
            raise InputFormatError("no FASTA file given")
        self.paths = [Path(p) for p in paths]
        self.compression: list[Compression] = []
        self.contigs: dict[str, Contig] = {}
        for i, path in enumerate(self.paths):
            if not path.is_file():
                raise InputFormatError(f"{path}: FASTA file not found")
            compression = detect_compression(path)
            self.compression.append(compression)
            check_fasta_start(path, compression)
            if compression == "gzip":
                lengths = [(name, len(seq)) for name, seq in stream_records(path)]
            else:
                lengths = [(e.name, e.length) for e in ensure_index(path)]
            for name, length in lengths:
                if name in self.contigs:
                    other = self.paths[self.contigs[name].file]
                    raise InputFormatError(f"{path}: record {name!r} also appears in {other}; record names must be unique")
                self.contigs[name] = Contig(name, length, i)
        self._handles: dict[int, pysam.FastaFile] = {}
        self._pid = os.getpid()

    @property
    def lengths(self) -> dict[str, int]:
        return {name: c.length for name, c in self.contigs.items()}

    def indexed(self, file: int) -> bool:
        return self.compression[file] != "gzip"

    def _handle(self, file: int) -> pysam.FastaFile:
        if self._pid != os.getpid():  # forked into a worker: never share the parent's handles
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(file)
        if handle is None:
            path = self.paths[file]
            if not self.indexed(file):
                raise InputFormatError(f"{path}: plain gzip has no random access; recompress it with bgzip")
            try:
                with quiet_htslib():
                    handle = pysam.FastaFile(str(path))
            except (OSError, ValueError) as err:
                raise InputFormatError(f"{path}: cannot open FASTA ({err})") from None
            self._handles[file] = handle
        return handle

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Bases [start, end) of `contig` (0-based half-open; case kept)."""
        info = self.contigs.get(contig)
        if info is None:
            raise InputFormatError(f"{self.paths[0]}: unknown record {contig!r}")
        if not 0 <= start <= end <= info.length:
            raise ValueError(f"{contig}:[{start}, {end}) is outside the record (length {info.length})")
        try:
            seq = self._handle(info.file).fetch(contig, start, end)
        except (OSError, ValueError) as err:
            raise InputFormatError(f"{self.paths[info.file]}: record {contig!r}: read failed ({err})") from None
        if len(seq) != end - start:
            raise InputFormatError(
                f"{self.paths[info.file]}: record {contig!r}: got {len(seq)} bases for [{start}, {end}); "
                f"the file is truncated or its index is stale"
            )
        return seq

    def stream(self, file: int) -> Iterator[tuple[str, str]]:
        """(name, sequence) of the records of file `file`, in file order."""
        return stream_records(self.paths[file])

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}  # pysam handles are never pickled
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()
