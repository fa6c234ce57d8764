"""`genossa score` throughput (variants/s) on one GPU, for a model preset with random weights.

Scores SNVs of the bundled E. coli slice with `score_variants` (the whole job: VCF read, REF
check, model, VCF write + tabix), for each window asked, on two VCFs:

- dense: all 3 SNVs at every position of a stretch (one record, 3 ALTs, per position), so
  the variants share windows and split points (saturation mutagenesis, a region's SNVs);
- sparse: one SNV every --sparse-spacing bases (each variant has a window of its own).

A first small run warms up (Triton compiles). Prints one JSON line per run.

    python3 benchmarks/score_bench.py --preset small --window 8192 131072

Target (issue 7): >= 1,000 variants/s at 8,192 bases with the small preset.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

import pysam
import torch

from genossa import resources
from genossa.models import config as presets
from genossa.models.hybrid import GenossaLM
from genossa.score import score_variants

CONTIG = "NC_007779.1"


def write_vcf(path: Path, positions: list[int], fasta: pysam.FastaFile) -> Path:
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID={CONTIG},length={fasta.get_reference_length(CONTIG)}>",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for p in positions:
        ref = fasta.fetch(CONTIG, p, p + 1).upper()
        alts = ",".join(b for b in "ACGT" if b != ref)
        lines.append(f"{CONTIG}\t{p + 1}\t.\t{ref}\t{alts}\t.\t.\t.")
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--window", type=int, nargs="+", default=[8192, 131072])
    ap.add_argument("--downstream", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64])
    ap.add_argument("--dense-positions", type=int, default=4096)
    ap.add_argument("--sparse-variants", type=int, default=64)
    ap.add_argument("--sparse-spacing", type=int, default=4000)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--rc-average", action="store_true")
    ap.add_argument("--vcfs", nargs="+", default=["dense", "sparse"], choices=["dense", "sparse"])
    ap.add_argument("--profile", action="store_true", help="cProfile each run: the top functions by own time")
    ap.add_argument("--profile-gpu", action="store_true", help="torch.profiler of each run: the top GPU kernels")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    model_dir = GenossaLM(getattr(presets, args.preset)()).save_pretrained(tmp / "model")
    fasta = pysam.FastaFile(str(resources.ECOLI_FASTA))
    dense_start = 140_000
    vcfs = {
        # the warm-up meets the kernel variants of both runs (Triton compiles each once: ~15 s on an
        # H200, which a 32-position warm-up left inside the timed dense run): several split points
        # of a window, full batches, and windows of their own
        "warmup": write_vcf(tmp / "warmup.vcf", [20_000 + i * args.sparse_spacing for i in range(4)]
                            + list(range(dense_start - 256, dense_start - 64)), fasta),  # sorted, as score asks
        "dense": write_vcf(tmp / "dense.vcf", list(range(dense_start, dense_start + args.dense_positions)), fasta),
        "sparse": write_vcf(tmp / "sparse.vcf", [20_000 + i * args.sparse_spacing for i in range(args.sparse_variants)],
                            fasta),
    }
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    runs = [(w, b) for w in args.window for b in args.batch_size]
    for window, batch in runs:
        for name in ("warmup", *args.vcfs):
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            profiler = cProfile.Profile() if args.profile and name != "warmup" else None
            gpu_profiler = None
            if args.profile_gpu and name != "warmup":
                from torch.profiler import ProfilerActivity, profile
                gpu_profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            t = time.perf_counter()
            with profiler or contextlib.nullcontext(), gpu_profiler or contextlib.nullcontext():
                s = score_variants(model_dir, resources.ECOLI_FASTA, vcfs[name], tmp / f"{name}.scored.vcf.gz",
                                   window=window, downstream=args.downstream, batch_size=batch,
                                   precision=args.precision, rc_average=args.rc_average, progress=False)
            wall = time.perf_counter() - t
            if profiler is not None:
                pstats.Stats(profiler).sort_stats("tottime").print_stats(14)
            if gpu_profiler is not None:
                print(gpu_profiler.key_averages().table(sort_by="self_device_time_total", row_limit=20,
                                                        max_name_column_width=50), flush=True)
            if name == "warmup":
                continue
            print(json.dumps({
                "preset": args.preset, "vcf": name, "window": window, "downstream": args.downstream,
                "batch_size": batch, "precision": args.precision,
                "rc_average": args.rc_average,
                "variants": s.scored, "seconds": round(wall, 2), "variants_per_s": round(s.scored / wall, 1),
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
                "device": gpu,
            }), flush=True)


if __name__ == "__main__":
    main()
