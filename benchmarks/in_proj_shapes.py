"""cuBLAS time of the mixers' input projection by its output width: the presets' widths
(d_inner + conv channels + heads: 1,676 small, 3,352 base) are not multiples of 16, which can
send a bf16 GEMM to a slower kernel; the same product padded, or split into the aligned part
and the heads' dt columns, is timed beside it.

    python3 benchmarks/in_proj_shapes.py --tokens 262144
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def time_ms(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=262144)
    args = ap.parse_args()
    rows = []
    # preset: (d_model, aligned width d_inner + conv channels, heads)
    for preset, (d_model, aligned, heads) in {"small": (512, 1664, 12), "base": (1024, 3328, 24)}.items():
        x = torch.randn(args.tokens, d_model, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(aligned + heads, d_model, device="cuda", dtype=torch.bfloat16) * 0.02
        flops = 2 * args.tokens * d_model * (aligned + heads)
        variants = {
            f"one GEMM, width {aligned + heads}": lambda: F.linear(x, w),
            "padded to a multiple of 16": lambda: F.linear(x, F.pad(w, (0, 0, 0, -(aligned + heads) % 16))),
            "padded to a multiple of 64": lambda: F.linear(x, F.pad(w, (0, 0, 0, -(aligned + heads) % 64))),
            f"split: {aligned} + {heads}": lambda: (F.linear(x, w[:aligned]), F.linear(x, w[aligned:])),
        }
        for name, fn in variants.items():
            ms = time_ms(fn)
            rows.append((preset, name, ms, flops / ms / 1e9))
    print(f"{'preset':<6} {'in_proj':<28} {'ms':>8} {'TFLOP/s':>8}")
    for preset, name, ms, tf in rows:
        print(f"{preset:<6} {name:<28} {ms:8.3f} {tf:8.1f}")


if __name__ == "__main__":
    main()
