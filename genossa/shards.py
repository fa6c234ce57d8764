"""Sharding a genome (and its VCFs) for parallel `genossa embed` / `genossa score` jobs.

A shard is a run of consecutive records of the genome, in reference order: one record per
shard by default, or, with `shard_bases` > 0, records grouped until a shard holds at least
that many bases (so a genome with thousands of small scaffolds does not become thousands of
jobs). Its region is a BED with one whole-record line per record: `genossa embed --regions`
tiles each line on its own, so a shard's windows are exactly the whole-genome run's windows
of those records, and `genossa.merge` can check that the shards cover the genome once.

Shard ids are `<index>_<first record>` (4-digit index in reference order; characters other
than letters, digits, `.`, `_` and `-` become `_`), so they are unique, sort in reference
order and are safe as file names and Snakemake wildcards.

Coordinates: BED, 0-based half-open. No torch here.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pysam

from genossa.errors import GenossaError
from genossa.io.bed import read_bed
from genossa.io.fasta import FastaGenome, quiet_htslib
from genossa.io.vcf import _open, _records, output_path_ok, publish_indexed_vcf

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Shard:
    id: str
    contigs: tuple[str, ...]
    bases: int


def plan_shards(lengths: Mapping[str, int], shard_bases: int = 0) -> list[Shard]:
    """Consecutive records of `lengths` (reference order) grouped into shards; see the module doc."""
    if shard_bases < 0:
        raise GenossaError(f"shard_bases must be >= 0, got {shard_bases}")
    groups: list[list[str]] = []
    size = 0
    for name, n in lengths.items():
        if not groups or size >= max(1, shard_bases):
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += n
    return [Shard(f"{k:04d}_{_UNSAFE.sub('_', g[0])}", tuple(g), sum(lengths[c] for c in g))
            for k, g in enumerate(groups)]


def genome_shards(fasta: str | Path | Sequence[str | Path], shard_bases: int = 0) -> list[Shard]:
    """`plan_shards` of the records of one or more FASTA files (one genome)."""
    paths = [fasta] if isinstance(fasta, (str, Path)) else list(fasta)
    return plan_shards(FastaGenome(paths).lengths, shard_bases)


def find_shard(shards: Sequence[Shard], shard_id: str) -> Shard:
    for s in shards:
        if s.id == shard_id:
            return s
    known = ", ".join(s.id for s in shards[:5]) + (", ..." if len(shards) > 5 else "")
    raise GenossaError(f"no shard {shard_id!r} in this genome's plan (it has {known}); was --shard-bases changed?")


def write_shard_bed(shard: Shard, lengths: Mapping[str, int], out: str | Path) -> Path:
    """One whole-record BED line per record of `shard`, written atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(f"{c}\t0\t{lengths[c]}\n" for c in shard.contigs))
    os.replace(tmp, out)
    return out


def split_vcf(vcf: str | Path, regions: str | Path, out: str | Path) -> int:
    """Copy the records of `vcf` on the records named in the BED `regions` (whole contigs:
    the BED's coordinates are not used) to `out` (bgzip + .tbi, header unchanged, file order
    kept); returns the number of records copied. Written under a temporary name, then renamed.
    """
    vcf, out = Path(vcf), output_path_ok(out)
    contigs = {iv.contig for iv in read_bed(regions)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.vcf.gz")
    tbi = Path(str(tmp) + ".tbi")
    n = 0
    try:
        reader = _open(vcf)
        try:
            with quiet_htslib(), pysam.VariantFile(str(tmp), "wz", header=reader.header) as writer:
                for _, record in _records(reader, vcf):
                    if record.chrom in contigs:
                        writer.write(record)
                        n += 1
        finally:
            reader.close()
        publish_indexed_vcf(tmp, out, "VCF shard")
    finally:
        for leftover in (tmp, tbi):
            if leftover.exists():
                leftover.unlink()
    return n
