"""`genossa embed` throughput (bases/s) on one GPU, for model presets with random weights.

For each preset: save a randomly initialized model, write a random plain FASTA of
--genome-mb megabases (indexed), run `embed_genome` once on a small piece (Triton compiles,
CUDA warms up), then time it on the whole genome for each (batch size, chunk) asked. Also
times the bare model (forward passes on device-resident tokens, no I/O) at the same shape,
so the overhead of reading, writing and importance is visible. Prints one JSON line per run.

    python3 benchmarks/embed_bench.py --preset small base --genome-mb 16 --batch-size 4 8 --chunk 16384 32768

Target (issue 6): a 3.1 Gb genome in <= 1 GPU-hour with the base preset, i.e. >= 860k bases/s.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genossa.embed import embed_genome
from genossa.models import config as presets
from genossa.models.hybrid import GenossaLM
from genossa.models.streaming import iter_stream


def write_genome(path: Path, megabases: float, records: int = 4, seed: int = 0, window: int = 1) -> Path:
    """Random records of whole windows (the job batches only windows of equal length: a tail
    window per record would cut every batch short)."""
    rng = np.random.default_rng(seed)
    n = max(window, int(megabases * 1e6) // records // window * window)
    with open(path, "w") as fh:
        for r in range(records):
            seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, n)].tobytes().decode()
            fh.write(f">chr{r + 1}\n")
            for i in range(0, n, 80):
                fh.write(seq[i:i + 80] + "\n")
    return path


def _bases(fasta: Path) -> int:
    return sum(len(line) - 1 for line in open(fasta) if not line.startswith(">"))


@torch.no_grad()
def bare_model(model: GenossaLM, batch: int, window: int, chunk: int, repeats: int = 3) -> float:
    """bases/s of the model alone (streaming pieces of `chunk`, bf16 autocast; a model with bf16
    weights runs without autocast)."""
    tokens = torch.randint(0, 4, (batch, window), device="cuda")
    autocast = next(model.parameters()).dtype == torch.float32
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        for _ in iter_stream(model, tokens.split(chunk, 1)):
            pass
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            for _ in iter_stream(model, tokens.split(chunk, 1)):
                pass
        torch.cuda.synchronize()
    return repeats * batch * window / (time.perf_counter() - t)


@torch.no_grad()
def profile_model(model: GenossaLM, batch: int, window: int, chunk: int) -> None:
    """Where one batch's forward spends its time: top CUDA kernels, then top CPU-side ops (launch
    and Python overhead show up there, not in the kernel table)."""
    from torch.profiler import ProfilerActivity, profile

    tokens = torch.randint(0, 4, (batch, window), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in iter_stream(model, tokens.split(chunk, 1)):
            pass
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in iter_stream(model, tokens.split(chunk, 1)):
                pass
            torch.cuda.synchronize()
    table = prof.key_averages()
    print(table.table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=50), flush=True)
    print(table.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", default=["small", "base"])
    ap.add_argument("--genome-mb", type=float, default=16.0)
    ap.add_argument("--window", type=int, default=131072)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[8])
    ap.add_argument("--chunk", type=int, nargs="+", default=[16384])
    ap.add_argument("--dims", default="")
    ap.add_argument("--precision", nargs="+", default=["auto"], help="the job's --precision (each is timed)")
    ap.add_argument("--bare", action="store_true", help="also time the bare model")
    ap.add_argument("--bf16-weights", action="store_true",
                    help="also time the bare model with its weights cast to bf16 (no autocast casts)")
    ap.add_argument("--profile", action="store_true",
                    help="also print the bare model's top CUDA kernels and CPU ops (torch.profiler, one batch)")
    ap.add_argument("--out", default=None, help="folder for the stores [default: a temp folder]")
    args = ap.parse_args()

    work = Path(args.out or tempfile.mkdtemp(prefix="embed_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    fasta = write_genome(work / "genome.fa", args.genome_mb, window=args.window)
    small_fasta = write_genome(work / "warm.fa", 2 * args.window / 1e6, records=1)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "genome_bases": _bases(fasta)}), flush=True)
    for preset in args.preset:
        torch.manual_seed(0)
        model = GenossaLM(getattr(presets, preset)())
        ckpt = model.save_pretrained(work / f"model_{preset}")
        n_params = model.num_parameters()
        for bs in args.batch_size:
            for chunk in args.chunk:
                for precision in args.precision:
                    common = dict(window=args.window, batch_size=bs, chunk=chunk, device="cuda",
                                  dims=args.dims or None, overwrite=True, progress=False, bedgraph=False,
                                  precision=precision)
                    embed_genome(ckpt, small_fasta, work / "warm.zarr", **common)
                    torch.cuda.reset_peak_memory_stats()
                    t = time.perf_counter()
                    s = embed_genome(ckpt, fasta, work / f"{preset}.zarr", **common)
                    wall = time.perf_counter() - t
                    row = {"preset": preset, "params": n_params, "window": args.window, "batch_size": bs,
                           "chunk": chunk, "precision": precision, "bases": s.bases,
                           "embed_bases_per_s": round(s.bases_per_second), "wall_s": round(wall, 2),
                           "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                           "hours_for_3.1Gb": round(3.1e9 / s.bases_per_second / 3600, 2)}
                    print(json.dumps(row), flush=True)  # before the slower extras, in case a time limit cuts them
                if args.bare or args.profile or args.bf16_weights:
                    torch.cuda.reset_peak_memory_stats()
                    m = GenossaLM.from_pretrained(ckpt, map_location="cuda").eval()
                    if args.bare:
                        bare = round(bare_model(m, bs, args.window, chunk))
                        print(json.dumps({"preset": preset, "batch_size": bs, "chunk": chunk,
                                          "bare_model_bases_per_s": bare,
                                          "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                                          "held_after_gib": round(torch.cuda.memory_allocated() / 2**30, 2)}),
                              flush=True)
                    if args.bf16_weights:  # a copy: casting m back to fp32 would keep the bf16 rounding
                        torch.cuda.reset_peak_memory_stats()
                        m16 = GenossaLM.from_pretrained(ckpt, map_location="cuda").eval().to(torch.bfloat16)
                        bare = round(bare_model(m16, bs, args.window, chunk))
                        del m16
                        print(json.dumps({"preset": preset, "batch_size": bs, "chunk": chunk, "weights": "bf16",
                                          "bare_model_bases_per_s": bare,
                                          "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}),
                              flush=True)
                    if args.profile:
                        profile_model(m, bs, args.window, chunk)
                    del m
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
