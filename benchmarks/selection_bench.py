"""Causal prefix top-k selection (`select_causal`) on one GPU: time per call at the layer
benchmark's shapes (query chunks of 128, window 512, cap 2,048), a fixed budget (base = cap) and an
adaptive one, each chunk's pool by the torch rule (impl "naive": a sorted top-k per chunk) and by the
Triton merge (impl "triton"), the per-kernel profile at the last length, and the two ways of taking
the top cap of each chunk's candidates (topk sorted vs a full sort) on that tensor's shape.

    PYTHONUNBUFFERED=1 python3 benchmarks/selection_bench.py --lengths 131072 1048576
"""
from __future__ import annotations

import argparse
import time

import torch
from checkout import use_checkout
from ssd_bench import bench

CHUNK, WINDOW, CAP = 128, 512, 2048


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[131072, 1048576])
    args = ap.parse_args()
    use_checkout()
    from genossa.ops.sparse_attention import select_causal

    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M:%S')}",
          flush=True)
    rows = []
    for T in args.lengths:
        g = torch.Generator(device="cuda").manual_seed(0)
        imp, comp = torch.randn(1, T, generator=g, device="cuda"), torch.rand(1, T, generator=g, device="cuda")
        for impl in ("naive", "triton"):
            for name, base, alpha in (("fixed k = cap", CAP, 0.0), ("adaptive k", CAP // 4, float(CAP))):
                def run():
                    return select_causal(imp, comp, q_start=0, n_queries=T, chunk_size=CHUNK, window=WINDOW,
                                         base=base, alpha=alpha, cap=CAP, impl=impl)
                ms = bench(run)
                rows.append((T, f"{impl}, {name}", ms))
                print(f"  n={T:8d} {impl:6s} {name:14s} {ms:.3f} ms", flush=True)
                if T == args.lengths[-1] and base == CAP:
                    from gpu_profile import kernel_table

                    print(kernel_table(run, repeats=3, rows=14, width=50, title=f"select_causal {impl} at n={T}"),
                          flush=True)
        # the per-chunk top-k's operand: NC rows of cap + 16 blocks of 128 keys
        cand = torch.randint(-2**62, 2**62, (1, T // CHUNK, 2 * CAP), device="cuda")
        rows.append((T, "topk(cap, sorted) of [NC, 2 cap]", bench(lambda: cand.topk(CAP, dim=-1, sorted=True))))
        rows.append((T, "sort of [NC, 2 cap], first cap", bench(lambda: cand.sort(-1, descending=True).values[..., :CAP])))
    print("\n| n | what | ms |\n|---|---|---|")
    for T, name, ms in rows:
        print(f"| {T // 1024}k | {name} | {ms:.3f} |")


if __name__ == "__main__":
    main()
