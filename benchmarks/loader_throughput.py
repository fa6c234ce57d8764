"""Tokenized-window throughput from an indexed FASTA, in bases/s on one CPU core.

    python benchmarks/loader_throughput.py [--mbases 50] [--window 131072] [--repeats 3]

Builds a ~50 Mb genome in a temp folder (the bundled E. coli slice, repeated into records
of ~4.8 Mb, 60 bases per line), as plain FASTA and as bgzip, indexes both, then measures
with torch.set_num_threads(1), the process pinned to one core and no DataLoader workers:

  fetch    pysam.FastaFile.fetch of each window (the I/O floor)
  encode   fetch + encode_window: uint8 tokens + soft mask (the genossa.io/numpy side)
  items    WindowDataset items: int64 tokens, soft_mask, valid, RC augmentation (p=0.5),
           shuffled order, N filter; what a DataLoader worker produces

Reports the best of `--repeats` passes over all windows (bases/s = real bases / seconds).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam
import torch

from genossa.data import DataConfig, WindowDataset
from genossa.data.windows import encode_window
from genossa.io.fasta import FastaGenome
from genossa.resources import ECOLI_FASTA


def build_genome(folder: Path, mbases: float) -> tuple[Path, Path]:
    with pysam.FastaFile(str(ECOLI_FASTA)) as fa:
        unit = "".join(fa.fetch(name) for name in fa.references)
    per_record = unit * 12  # ~4.8 Mb, about one E. coli genome per record
    n_records = max(1, round(mbases * 1e6 / len(per_record)))
    plain = folder / "genome.fa"
    with open(plain, "w") as fh:
        for i in range(n_records):
            fh.write(f">chr{i + 1}\n")
            fh.write("\n".join(per_record[j : j + 60] for j in range(0, len(per_record), 60)))
            fh.write("\n")
    bgzip = folder / "genome.fa.gz"
    pysam.tabix_compress(str(plain), str(bgzip), force=True)
    for path in (plain, bgzip):
        pysam.faidx(str(path))
    return plain, bgzip


def measure(path: Path, window: int, repeats: int) -> dict[str, float]:
    cfg = DataConfig(fasta=(str(path),), window=window, rc_prob=0.5, shuffle=True, seed=0)
    dataset = WindowDataset(cfg, rank=0, world_size=1)
    plan = dataset.plan
    windows = [(plan.contigs[c], int(s), int(e)) for c, s, e in zip(plan.contig, plan.start, plan.end)]
    total = sum(e - s for _, s, e in windows)
    genome = FastaGenome([path])
    results = {}

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return total / min(times)

    def fetch_only():
        for contig, s, e in windows:
            genome.fetch(contig, s, e)

    def encode():
        for contig, s, e in windows:
            raw = np.frombuffer(genome.fetch(contig, s, e).encode("ascii"), dtype=np.uint8)
            encode_window(raw, file=str(path), record=contig, offset=s)

    def items():
        dataset.set_epoch(0)
        dataset._positions = {}
        n = 0
        for item in dataset:
            n += int(item["valid"].sum())
        assert n == total, (n, total)

    results["fetch"] = best(fetch_only)
    results["encode"] = best(encode)
    results["items"] = best(items)
    results["windows"] = len(windows)
    results["bases"] = total
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbases", type=float, default=50.0, help="genome size in Mb")
    parser.add_argument("--window", type=int, default=131072)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"CPU: {cpu}; 1 core; torch {torch.__version__}, pysam {pysam.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        plain, bgzip = build_genome(Path(tmp), args.mbases)
        print(f"genome: {os.path.getsize(plain) / 1e6:.1f} MB plain, {os.path.getsize(bgzip) / 1e6:.1f} MB bgzip; "
              f"window {args.window:,}, best of {args.repeats}")
        print("| file | windows | fetch Mb/s | fetch+encode Mb/s | dataset items Mb/s |")
        print("|---|---|---|---|---|")
        for label, path in (("plain", plain), ("bgzip", bgzip)):
            r = measure(path, args.window, args.repeats)
            print(f"| {label} | {r['windows']:,} | {r['fetch'] / 1e6:,.0f} | {r['encode'] / 1e6:,.0f} | {r['items'] / 1e6:,.0f} |")


if __name__ == "__main__":
    main()
