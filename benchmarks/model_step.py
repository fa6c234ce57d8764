"""One training step of a whole GenossaLM (forward + backward of the MRL loss) on one device.

Reports, per window length: step time, tokens/s, model FLOPs utilization against the matmul
rate measured in the same run, and peak memory. Without the package installed (the GPU
image), `genossa.kernels` is registered from the top-level kernels/ folder.

    python benchmarks/model_step.py --preset small --lengths 16384 131072 --dtype bf16

--profile: after the timing, one more step of each length under torch.profiler; prints the top
kernels by their own GPU time (where a step's time goes: scan, attention, matmuls, elementwise).
"""
from __future__ import annotations

import argparse
import time

from checkout import use_checkout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16384, 131072])
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpointing", type=int, nargs="?", const=-1, default=0,
                        help="activation checkpointing: every block, or the first K blocks (--checkpointing K)")
    parser.add_argument("--profile", action="store_true", help="one profiled step per length: top GPU kernels")
    args = parser.parse_args()
    use_checkout()
    import torch

    from genossa.models.config import PRESETS
    from genossa.models.hybrid import GenossaLM
    from genossa.train.objective import flops_per_token

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    config = PRESETS[args.preset]()
    torch.manual_seed(0)
    model = GenossaLM(config).to(device=device, dtype=dtype)
    model.gradient_checkpointing = True if args.checkpointing < 0 else args.checkpointing
    n = 8192 if device.type == "cuda" else 512
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(5):
        a @ b
    _sync(device)
    peak_rate = 2 * n**3 * 5 / (time.perf_counter() - started)
    print(f"{args.preset}: {model.num_parameters() / 1e6:.1f} M parameters, {device}, {args.dtype}, "
          f"measured matmul {peak_rate / 1e12:.1f} TFLOP/s", flush=True)
    rows = []
    for length in args.lengths:
        tokens = torch.randint(0, 4, (1, length), device=device)
        times = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(args.repeats + 1):  # the first one compiles the kernels
            _sync(device)
            started = time.perf_counter()
            model.compute_loss(tokens).loss.backward()
            _sync(device)
            if i:
                times.append(time.perf_counter() - started)
            model.zero_grad(set_to_none=True)
        step = sorted(times)[len(times) // 2]
        tokens_per_s = length / step
        mfu = tokens_per_s * flops_per_token(config, length) / peak_rate
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
        rows.append((length, step * 1e3, tokens_per_s, mfu, peak))
        print(f"  n={length}: {step * 1e3:.1f} ms", flush=True)
        if args.profile:
            _profile_step(model, tokens)
    print("\n| n | step ms | tokens/s | MFU | peak MiB |\n|---|---|---|---|---|")
    for length, ms, tps, mfu, peak in rows:
        print(f"| {length:,} | {ms:.1f} | {tps:,.0f} | {mfu:.1%} | {peak:,.0f} |")


def _profile_step(model, tokens) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        model.compute_loss(tokens).loss.backward()
        torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60),
          flush=True)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
