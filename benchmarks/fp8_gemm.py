"""Would FP8 matrix products pay for inference? The base preset's per-layer products (262,144
tokens) in bf16 beside FP8 e4m3 with row-wise scales (torch._scaled_mm), the activation's
quantization (per-row absmax, scale, cast) timed on its own and included, and the FP8 result's
relative error against bf16.

    python3 benchmarks/fp8_gemm.py --tokens 262144
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from in_proj_shapes import time_ms  # benchmarks/ is the script's folder

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x in e4m3, fp32 scale [rows, 1]) with x ~ q * scale, one scale per row."""
    scale = x.abs().amax(-1, keepdim=True).float().clamp_min(1e-12) / E4M3_MAX
    return (x / scale).to(E4M3), scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=262144)
    args = ap.parse_args()
    d = 1024
    # base: in_proj (3,352), out_proj (1,536 -> 1,024), qkv (3,072), o, SwiGLU up (4,096) and down (2,048 -> 1,024)
    shapes = {"in_proj": (d, 3360),  # 3,352 padded: FP8 products need widths divisible by 16
               "out_proj": (1536, d), "qkv": (d, 3 * d), "attn out": (d, d),
              "mlp up": (d, 4096), "mlp down": (2048, d)}
    print(f"{'product':<10} {'bf16 ms':>8} {'fp8 ms':>8} {'quant ms':>9} {'fp8+q ms':>9} {'speedup':>8} {'rel err':>8}")
    total = [0.0, 0.0]
    for name, (k, n) in shapes.items():
        x = torch.randn(args.tokens, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5
        wq, ws = quantize_rows(w)  # weights quantized once, ahead of time
        xq, xs = quantize_rows(x)
        wq_t, ws_t = wq.t(), ws.t().contiguous()  # column-major second operand, scales [1, n]

        def fp8():
            return torch._scaled_mm(xq, wq_t, scale_a=xs, scale_b=ws_t, out_dtype=torch.bfloat16)

        ref = F.linear(x, w).float()
        err = ((fp8().float() - ref).norm() / ref.norm()).item()
        t16 = time_ms(lambda: F.linear(x, w))
        t8 = time_ms(fp8)
        tq = time_ms(lambda: quantize_rows(x))
        total[0] += t16
        total[1] += t8 + tq
        print(f"{name:<10} {t16:8.3f} {t8:8.3f} {tq:9.3f} {t8 + tq:9.3f} {t16 / (t8 + tq):8.2f} {err:8.4f}")
    print(f"{'per layer':<10} {total[0]:8.3f} {'':>8} {'':>9} {total[1]:9.3f} {total[0] / total[1]:8.2f}")


if __name__ == "__main__":
    main()
