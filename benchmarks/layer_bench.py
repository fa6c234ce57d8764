"""One whole scan-informed layer on one GPU: SSD scan with importance -> per-scale importance and
complexity -> causal prefix top-k selection -> sparse attention, forward and forward+backward,
beside mamba_ssm's SSD alone and mamba_ssm's SSD + dense causal SDPA (FlashAttention-2).

Shapes are the DESIGN.md / issue-4 anchors: B=1, SSD 16 heads x 64, d_state 128, chunk 256, 4
memory scales of 4 heads; attention 8 heads x 64, query chunks of 128, window 512 + 2,048 selected
keys (base = cap = 2048, so every chunk past the first 2.5k positions uses 2,048 keys), with the
scan bias as one fp32 term per key (the model's folded form, ops/sparse_attention/bias.py). The layer's
projections are left out on both sides (the same matmuls in either layer). Selection has no
gradient; gradients flow to the SSD inputs, q, k, v and the key bias. Time: median of triton.testing.do_bench;
the forward is also split into its three parts. Peak memory: one fwd+bwd, inputs included.
Dense SDPA at 1M is not run (~14 s; DESIGN.md's anchor is quoted instead).

    PYTHONUNBUFFERED=1 python3 benchmarks/layer_bench.py --mamba .peers/mamba_ssm-2.3.2.post1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from checkout import use_checkout
from ssd_bench import bench, import_mamba, make_inputs, peak_mib

ROOT = Path(__file__).resolve().parents[1]
AH, AD, CHUNK, WINDOW, KEYS = 8, 64, 128, 512, 2048
SCALES = 4
DENSE_1M_ANCHOR_MS = 13_700  # DESIGN.md: mamba_ssm SSD + dense SDPA fwd+bwd at 1M on an H100


def make_layer(T):
    use_checkout()
    from genossa.ops.sparse_attention import combine_scales, select_causal
    from genossa.ops.sparse_attention.triton import sparse_attention_indexed
    from genossa.ops.ssd.triton import ssd_triton

    inp = make_inputs(T, torch.bfloat16, requires_grad=True)
    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(1, T, AH, AD, generator=g, device="cuda", dtype=torch.bfloat16).requires_grad_(True)
               for _ in range(3))
    kb = torch.randn(1, T, AH, generator=g, device="cuda").requires_grad_(True)
    leaves = [t for t in inp.values() if t is not None] + [q, k, v, kb]

    def scan():
        y, imp = ssd_triton(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], chunk_size=256,
                            return_importance=True)
        return y, imp

    def select(imp):
        per_scale = lambda t: t.view(1, T, SCALES, -1).mean(-1)  # noqa: E731  [B, T, S]
        importance, complexity = combine_scales(per_scale(imp.norm), per_scale(imp.change))
        sel, _ = select_causal(importance, complexity, q_start=0, n_queries=T, chunk_size=CHUNK, window=WINDOW,
                               base=KEYS, alpha=0.0, cap=KEYS)
        return sel

    def attend(sel):
        return sparse_attention_indexed(q, k, v, sel.pos, sel.valid, chunk_size=CHUNK, window=WINDOW, key_bias=kb,
                                        distinct=True)  # as the module passes it

    def layer():
        y, imp = scan()
        return y, attend(select(imp))

    return inp, (q, k, v), leaves, dict(scan=scan, select=select, attend=attend, layer=layer)


def run(T, mamba):
    rows = {}
    inp, (q, k, v), leaves, parts = make_layer(T)
    dy, do = torch.randn_like(inp["x"]), torch.randn_like(q)

    def ours_fb():
        y, o = parts["layer"]()
        torch.autograd.backward([y, o], [dy, do])

    with torch.no_grad():
        y, imp = parts["scan"]()
        sel = parts["select"](imp)
        split = dict(scan=bench(parts["scan"]), select=bench(lambda: parts["select"](imp)),
                     attend=bench(lambda: parts["attend"](sel)))
        fwd = bench(parts["layer"])
    keys = sel.valid.sum(-1).float().mean().item()
    rows["genossa layer"] = (fwd, bench(ours_fb, grad_to_none=leaves), peak_mib(ours_fb))
    print(f"  n={T:8d} genossa layer: fwd {fwd:.2f} ms (scan {split['scan']:.2f} + select {split['select']:.2f} "
          f"+ attention {split['attend']:.2f}), mean selected keys/chunk {keys:.0f}", flush=True)
    if mamba is not None:
        ssd = lambda: mamba(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], 256, D=inp["D"])  # noqa: E731

        def ssd_fb():
            ssd().backward(dy)

        with torch.no_grad():
            fwd = bench(ssd)
        rows["mamba_ssm SSD"] = (fwd, bench(ssd_fb, grad_to_none=leaves), peak_mib(ssd_fb))
        if T <= 131072:
            sdpa = torch.nn.functional.scaled_dot_product_attention

            def dense():
                return ssd(), sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)

            def dense_fb():
                y, o = dense()
                torch.autograd.backward([y, o], [dy, do.transpose(1, 2)])

            with torch.no_grad():
                fwd = bench(dense)
            rows["mamba_ssm SSD + dense SDPA"] = (fwd, bench(dense_fb, grad_to_none=leaves), peak_mib(dense_fb))
    for name, (f, fb, mem) in rows.items():
        print(f"  n={T:8d} {name:28s} fwd {f:9.2f} ms  fwd+bwd {fb:9.2f} ms  peak {mem:8.0f} MiB", flush=True)
    del inp, q, k, v, leaves, parts
    torch.cuda.empty_cache()
    return rows


def profile_layer(T):
    """GPU time per kernel over 2 forward+backward calls of our layer at T (after one to compile)."""
    from gpu_profile import kernel_table

    inp, (q, k, v), leaves, parts = make_layer(T)
    dy, do = torch.randn_like(inp["x"]), torch.randn_like(q)

    def step():
        for t in leaves:
            t.grad = None  # as the timing does: no gradient accumulation
        y, o = parts["layer"]()
        torch.autograd.backward([y, o], [dy, do])

    print(kernel_table(step, repeats=2, title=f"kernels of 2 layer fwd+bwd at n={T}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mamba", type=Path, default=ROOT / ".peers" / "mamba_ssm-2.3.2.post1")
    ap.add_argument("--lengths", type=int, nargs="+", default=[16384, 131072, 1048576])
    ap.add_argument("--profile", type=int, metavar="N", help="instead: GPU time per kernel of the layer at n=N")
    ap.add_argument("--ours-only", action="store_true", help="time our layer alone (no mamba_ssm, no dense SDPA)")
    ap.add_argument("--attn-config", type=json.loads, default={},
                    help='attention launch settings over its KERNEL_CONFIG, e.g. \'{"fwd": [128, 64, 4, 3]}\'')
    ap.add_argument("--ssd-fwd-config", type=json.loads, default={},
                    help='SSD forward launch settings over KERNEL_CONFIG["fwd"], e.g. \'{"block_l": 64}\'')
    args = ap.parse_args()
    use_checkout()
    from genossa.ops.sparse_attention import triton as sat
    from genossa.ops.ssd import triton as ssd_triton_mod

    sat.KERNEL_CONFIG.update({k: tuple(v) if isinstance(v, list) else v for k, v in args.attn_config.items()})
    ssd_triton_mod.KERNEL_CONFIG["fwd"].update(args.ssd_fwd_config)
    if args.profile:
        return profile_layer(args.profile)
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    import triton

    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    mamba = import_mamba(args.mamba) if args.mamba.exists() and not args.ours_only else None
    print(f"attention launch settings: {sat.KERNEL_CONFIG}; SSD: {ssd_triton_mod.KERNEL_CONFIG}", flush=True)
    results = {T: run(T, mamba) for T in args.lengths}
    print("\n| n | layer | fwd ms | fwd+bwd ms | peak MiB | peak bytes/token | fwd+bwd vs ours |")
    print("|---|---|---|---|---|---|---|")
    for T, rows in results.items():
        ours = rows["genossa layer"][1]
        for name, (f, fb, mem) in rows.items():
            print(f"| {T // 1024}k | {name} | {f:.2f} | {fb:.2f} | {mem:.0f} | {mem * 2**20 / T:.0f} | {fb / ours:.2f}x |")
        if T >= 1048576:
            print(f"| {T // 1024}k | mamba_ssm SSD + dense SDPA (DESIGN.md anchor) | - | {DENSE_1M_ANCHOR_MS} | - | - | "
                  f"{DENSE_1M_ANCHOR_MS / ours:.0f}x |")


if __name__ == "__main__":
    sys.exit(main())
