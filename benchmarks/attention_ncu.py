"""One forward+backward of the sparse attention's kernels, for Nsight Compute to read counters of.

attention_bench.py's pattern (8 heads x 64, chunks of 128, window 512, 2,048 selected keys per
chunk, indexed layout, bf16) at n positions: one warm-up call (compiles the kernels), then one
profiled call. Under ncu, skip the warm-up's three kernels:

    ncu --clock-control none --launch-skip 3 --launch-count 3 \
        --kernel-name regex:'_sparse_attn_fwd_kernel|_dq_kernel|_dkv_local_kernel' \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
        --section Occupancy --section InstructionStats python3 benchmarks/attention_ncu.py --n 131072
"""
from __future__ import annotations

import argparse
import math

import torch
from attention_bench import CHUNK, D, WINDOW, make_pattern, make_qkv, sat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=131072)
    n = ap.parse_args().n
    q, k, v = make_qkv(n, torch.bfloat16, requires_grad=True)
    _, _, pos, valid = make_pattern(n)
    use = sat.usable_selection(pos, valid, q_start=0, chunk_size=CHUNK, window=WINDOW, causal=True)
    rows, cnt = sat.compact_selection(use, pos, indexed=True, k_start=0)
    kb = sat._by_head(torch.zeros(k.shape[:3], device=q.device))
    for _ in range(2):  # warm-up, then the profiled call
        out = sat.SparseAttentionFunction.apply(q, k, v, kb, None, None, None, rows, cnt, CHUNK, WINDOW, True, 0, 0,
                                                1 / math.sqrt(D))
        out.backward(torch.ones_like(out))
        torch.cuda.synchronize()
    print(f"n={n}: done (mean used keys per chunk {cnt.float().mean().item():.0f})")


if __name__ == "__main__":
    main()
