"""Regenerate the tiny fixtures made from the bundled genome (deterministic, seeded).

    python -m genossa.resources.make_resources

writes, next to this file:

- `ecoli_reads.bam` (+ `.bai`): reads sampled from `ecoli_k12.fa.gz` with 1% substitutions:
  long reads of 5-20 kb, short reads of 100-900 bp, and a few that the default filters
  remove (secondary, supplementary, duplicate, QC-fail, MAPQ 3, a secondary without SEQ)
  plus unmapped reads. `simulate_reads()` returns the same list, so tests can compute the
  expected filter counts independently of the BAM.
- `ecoli_regions.bed`: a few BED4 regions on the bundled records.
- `ecoli_variants.vcf.gz` (+ `.tbi`): 50 variants whose REF matches the genome (SNVs, MNVs,
  insertions, deletions, multi-allelic records, variants at both ends of a record, one
  symbolic <DEL>); INFO/VT names each variant's class.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

from genossa.resources import ECOLI_FASTA, ECOLI_READS_BAM, ECOLI_REGIONS_BED, ECOLI_VARIANTS_VCF

SEED = 20240601
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True)
class SimRead:
    """One simulated read as written to the BAM (contig None = unmapped)."""

    name: str
    contig: str | None
    start: int
    sequence: str
    flag: int
    mapq: int


def _mutate(seq: str, rng: np.random.Generator, rate: float = 0.01) -> str:
    raw = np.frombuffer(seq.encode(), dtype=np.uint8).copy()
    hits = np.flatnonzero(rng.random(raw.size) < rate)
    # a substitution to one of the three other bases
    shift = rng.integers(1, 4, size=hits.size)
    codes = np.searchsorted(BASES, raw[hits])
    raw[hits] = BASES[(codes + shift) % 4]
    return raw.tobytes().decode()


def simulate_reads(fasta: str | Path = ECOLI_FASTA, seed: int = SEED) -> list[SimRead]:
    """The fixture's reads in BAM order (coordinate-sorted, unmapped last)."""
    rng = np.random.default_rng(seed)
    with pysam.FastaFile(str(fasta)) as fa:
        contigs = list(zip(fa.references, fa.lengths))
        weights = np.array([n for _, n in contigs], dtype=float)
        weights /= weights.sum()

        def sample(kind: str, count: int, lo: int, hi: int, flag: int = 0, mapq: int = 60, mapped: bool = True):
            reads = []
            for i in range(count):
                length = int(rng.integers(lo, hi + 1))
                c = int(rng.choice(len(contigs), p=weights))
                name, size = contigs[c]
                start = int(rng.integers(0, size - length + 1))
                seq = _mutate(fa.fetch(name, start, start + length), rng)
                reverse = 0x10 if rng.random() < 0.5 else 0
                if mapped:
                    reads.append(SimRead(f"{kind}_{i}", name, start, seq, flag | reverse, mapq))
                else:
                    reads.append(SimRead(f"{kind}_{i}", None, -1, seq, 0x4, 0))
            return reads

        reads = (
            sample("long", 8, 5000, 20000)
            + sample("short", 30, 100, 900)
            + sample("secondary", 2, 1500, 3000, flag=0x100, mapq=0)
            + sample("supplementary", 2, 1500, 3000, flag=0x800)
            + sample("duplicate", 2, 1500, 3000, flag=0x400)
            + sample("qcfail", 2, 1500, 3000, flag=0x200)
            + sample("lowmapq", 3, 1500, 3000, mapq=3)
            + sample("unmapped", 2, 2000, 4000, mapped=False)
        )
        nosq = sample("secondary_noseq", 1, 2000, 2000, flag=0x100, mapq=0)[0]
        reads.append(SimRead(nosq.name, nosq.contig, nosq.start, "", nosq.flag, nosq.mapq))
    order = {name: i for i, (name, _) in enumerate(contigs)}
    return sorted(reads, key=lambda r: (r.contig is None, order.get(r.contig, 0), r.start, r.name))


def write_bam(path: Path = ECOLI_READS_BAM, fasta: Path = ECOLI_FASTA) -> list[SimRead]:
    reads = simulate_reads(fasta)
    with pysam.FastaFile(str(fasta)) as fa:
        header = {
            "HD": {"VN": "1.6", "SO": "coordinate"},
            "SQ": [{"SN": n, "LN": ln} for n, ln in zip(fa.references, fa.lengths)],
        }
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for r in reads:
            seg = pysam.AlignedSegment(out.header)
            seg.query_name = r.name
            seg.flag = r.flag
            seg.mapping_quality = r.mapq
            if r.contig is None:
                seg.reference_id, seg.reference_start = -1, -1
            else:
                seg.reference_name, seg.reference_start = r.contig, r.start
                length = len(r.sequence) or 2000
                seg.cigartuples = [(0, length)]  # M: the reads have substitutions only
            if r.sequence:
                seg.query_sequence = r.sequence
            out.write(seg)
    pysam.index(str(path))
    return reads


REGIONS = [
    ("NC_007779.1", 10_000, 60_000, "thrL_region"),
    ("NC_007779.1", 150_000, 270_000, "middle"),
    ("NC_007779.1_2000000_2100000", 20_000, 45_000, "heldout_part"),
]


def write_bed(path: Path = ECOLI_REGIONS_BED) -> None:
    lines = ["# regions of the bundled E. coli slice (0-based half-open, BED4)"]
    lines += [f"{c}\t{s}\t{e}\t{n}" for c, s, e, n in REGIONS]
    path.write_text("\n".join(lines) + "\n")


def simulate_variants(fasta: Path = ECOLI_FASTA, seed: int = SEED) -> list[tuple[str, int, str, str, str]]:
    """(contig, 1-based pos, REF, ALT, class) of the fixture's variants, sorted."""
    rng = np.random.default_rng(seed + 1)
    variants = []
    with pysam.FastaFile(str(fasta)) as fa:
        contigs = list(zip(fa.references, fa.lengths))

        def ref(contig: str, pos0: int, n: int) -> str:
            return fa.fetch(contig, pos0, pos0 + n).upper()

        def other(base: str, k: int = 1) -> list[str]:
            return list(rng.choice([b for b in "ACGT" if b != base], size=k, replace=False))

        # distinct positions at least 50 bp apart, away from the record ends
        taken: list[tuple[str, int]] = []
        while len(taken) < 47:
            c = int(rng.integers(0, len(contigs)))
            name, size = contigs[c]
            pos0 = int(rng.integers(100, size - 100))
            if all(n != name or abs(p - pos0) >= 50 for n, p in taken):
                taken.append((name, pos0))
        kinds = ["SNV"] * 25 + ["MNV"] * 5 + ["INS"] * 7 + ["DEL"] * 7 + ["MULTI"] * 2 + ["SV"]
        for (name, pos0), kind in zip(taken, kinds):
            if kind == "SNV":
                r = ref(name, pos0, 1)
                variants.append((name, pos0 + 1, r, other(r)[0], kind))
            elif kind == "MNV":
                r = ref(name, pos0, int(rng.integers(2, 4)))
                variants.append((name, pos0 + 1, r, "".join(other(b)[0] for b in r), kind))
            elif kind == "INS":
                r = ref(name, pos0, 1)
                ins = "".join(rng.choice(list("ACGT"), size=int(rng.integers(1, 11))))
                variants.append((name, pos0 + 1, r, r + ins, kind))
            elif kind == "DEL":
                r = ref(name, pos0, int(rng.integers(2, 12)))
                variants.append((name, pos0 + 1, r, r[0], kind))
            elif kind == "MULTI":
                r = ref(name, pos0, 1)
                a, b = other(r, 2)
                variants.append((name, pos0 + 1, r, f"{a},{r}{b}", kind))
            else:
                r = ref(name, pos0, 1)
                variants.append((name, pos0 + 1, r, "<DEL>", kind))
        # both ends of the held-out record: its first base and a deletion ending at its last base
        name, size = contigs[-1]
        r = ref(name, 0, 1)
        variants.append((name, 1, r, other(r)[0], "SNV"))
        r = ref(name, size - 3, 3)
        variants.append((name, size - 2, r, r[0], "DEL"))
        # and an SNV right before that deletion
        r = ref(name, size - 4, 1)
        variants.append((name, size - 3, r, other(r)[0], "SNV"))
    order = {n: i for i, (n, _) in enumerate(contigs)}
    return sorted(variants, key=lambda v: (order[v[0]], v[1]))


def write_vcf(path: Path = ECOLI_VARIANTS_VCF, fasta: Path = ECOLI_FASTA) -> None:
    variants = simulate_variants(fasta)
    with pysam.FastaFile(str(fasta)) as fa:
        contigs = list(zip(fa.references, fa.lengths))
    lines = [
        "##fileformat=VCFv4.2",
        f"##reference={fasta.name}",
        *[f"##contig=<ID={n},length={ln}>" for n, ln in contigs],
        '##INFO=<ID=VT,Number=1,Type=String,Description="Variant class: SNV, MNV, INS, DEL, MULTI or SV">',
        '##INFO=<ID=SVTYPE,Number=1,Type=String,Description="Type of structural variant">',
        '##INFO=<ID=END,Number=1,Type=Integer,Description="End position of the structural variant">',
        '##INFO=<ID=SVLEN,Number=.,Type=Integer,Description="Length difference of the structural variant">',
        '##ALT=<ID=DEL,Description="Deletion">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    for i, (contig, pos, ref, alt, kind) in enumerate(variants, start=1):
        info = f"VT={kind}"
        if alt == "<DEL>":
            info += f";SVTYPE=DEL;END={pos + 500};SVLEN=-500"
        lines.append(f"{contig}\t{pos}\tvar{i:03d}\t{ref}\t{alt}\t.\tPASS\t{info}")
    plain = Path(str(path)[: -len(".gz")])
    plain.write_text("\n".join(lines) + "\n")
    pysam.tabix_index(str(plain), preset="vcf", force=True, keep_original=False)


def main() -> None:
    write_bam()
    write_bed()
    write_vcf()
    for p in (ECOLI_READS_BAM, ECOLI_REGIONS_BED, ECOLI_VARIANTS_VCF):
        print(f"{p.name}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
