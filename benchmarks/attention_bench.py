"""Scan-informed sparse attention on one GPU: genossa's Triton kernels beside FlexAttention with the
same sparsity pattern and dense causal SDPA (FlashAttention-2).

Pattern (B=1, 8 heads x 64, causal): query chunks of 128; each chunk sees its local span (window
512 + the causal diagonal) and 16 selected blocks of 128 keys (2048 keys, random blocks entirely
before the span, shared by the chunk), i.e. the DESIGN.md anchor "window 512 + top-16 blocks of
128". FlexAttention gets it as a BlockMask built directly from the block lists (full blocks:
window + selected; partial: the diagonal with a causal mask_mod), so no n x n mask is evaluated.

1. Correctness: ours (bf16, fp32) against the fp32 PyTorch reference `naive_sparse_attention` at
   4k-64k, output and every gradient, relative error ||a - b|| / ||b||; FlexAttention against
   ours at 16k (the same pattern).
2. Launch sweep of ours at 128k (forward, then backward), the best is kept.
3. Timing at n = 16k, 128k, 1M, bf16: forward and forward+backward, median ms
   (triton.testing.do_bench), TFLOP/s of the useful work (4 * 64 flops per query-key pair and
   head forward, 3.5x that forward+backward; the same count for ours and Flex; dense SDPA on its
   own causal work) and peak memory (torch.cuda.max_memory_allocated over one call, inputs
   included). Ours: `sparse_attention_indexed` (selected keys read from k, v by index; its
   per-call selection bookkeeping included), the kernels alone, and the gathered-key op
   `sparse_attention_triton` (sel_k / sel_v materialized: 2 GB each at 128k, left out at 1M).

    PYTHONUNBUFFERED=1 python3 benchmarks/attention_bench.py
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
from checkout import use_checkout

DEVICE = "cuda"
H, D = 8, 64
CHUNK, WINDOW, NBLK, BLK = 128, 512, 16, 128


def import_genossa():
    use_checkout()
    from genossa.ops.sparse_attention import triton as sat
    from genossa.ops.sparse_attention.naive import gather_selected, naive_sparse_attention

    return sat, gather_selected, naive_sparse_attention


sat, gather_selected, naive_sparse_attention = import_genossa()


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


PATTERN = "random"
"""How chunks pick their blocks (--pattern): "random", each chunk its own random blocks (neighbours share
few); "prefix", the model's rule (select_causal): one score per block, each chunk the top blocks of
those before its span, so that neighbouring chunks share all but about one block."""


def make_pattern(n, nblk=NBLK, seed=0):
    """Selected blocks per chunk: [NC, nblk] block ids and validity (before the span; PATTERN)."""
    NC, NB = n // CHUNK, n // BLK
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    if PATTERN == "prefix":
        score = torch.rand(1, NB, generator=g, device=DEVICE).expand(NC, NB)
    else:
        score = torch.rand(NC, NB, generator=g, device=DEVICE)
    first_local = (torch.arange(NC, device=DEVICE) * CHUNK - WINDOW) // BLK  # first block of the span
    score = torch.where(torch.arange(NB, device=DEVICE)[None] < first_local[:, None], score, -1.0)
    top = score.topk(min(nblk, NB), dim=1)
    blocks, ok = top.indices, top.values >= 0
    sel_pos = (blocks[..., None] * BLK + torch.arange(BLK, device=DEVICE)).reshape(NC, -1)
    sel_valid = ok.repeat_interleave(BLK, dim=1)
    return blocks, ok, torch.where(sel_valid, sel_pos, -1)[None], sel_valid[None]


def useful_pairs(n, sel_valid):
    """Query-key pairs attended: local span (window + diagonal) plus the valid selected keys."""
    i = torch.arange(n, device=DEVICE)
    i0 = (i // CHUNK) * CHUNK
    local = (i - torch.clamp(i0 - WINDOW, min=0) + 1).sum().item()
    return local + CHUNK * sel_valid.sum().item()


def make_qkv(n, dtype, seed=0, requires_grad=False):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return [torch.randn(1, n, H, D, generator=g, device=DEVICE, dtype=dtype).requires_grad_(requires_grad)
            for _ in range(3)]


def kw():
    return dict(chunk_size=CHUNK, window=WINDOW, causal=True)


def correctness(n, dtype, nblk, layouts):
    q, k, v = make_qkv(n, torch.float32, seed=1)
    _, _, pos, valid = make_pattern(n, nblk, seed=1)
    dout = torch.randn(1, n, H, D, device=DEVICE)
    qr, kr, vr = (t.clone().requires_grad_() for t in (q, k, v))
    ref = naive_sparse_attention(qr, kr, vr, gather_selected(kr, pos), gather_selected(vr, pos), pos, valid, **kw())
    ref_g = torch.autograd.grad(ref, (qr, kr, vr), dout)
    del qr, kr, vr
    rows = []
    for layout in layouts:
        qd, kd, vd = (t.to(dtype).requires_grad_() for t in (q, k, v))
        if layout == "indexed":
            out = sat.sparse_attention_indexed(qd, kd, vd, pos, valid, **kw())
            grads = torch.autograd.grad(out, (qd, kd, vd), dout.to(dtype))
        else:
            sk, sv = gather_selected(kd, pos), gather_selected(vd, pos)
            out = sat.sparse_attention_triton(qd, kd, vd, sk, sv, pos, valid, **kw())
            grads = torch.autograd.grad(out, (qd, kd, vd), dout.to(dtype))
        errs = [rel(out, ref)] + [rel(a, b) for a, b in zip(grads, ref_g)]
        rows.append((n, str(dtype).split(".")[-1], layout, nblk * BLK, *errs))
        print(f"  n={n:>6} {rows[-1][1]:>8} {layout:>8} K={nblk * BLK:>5}: out {errs[0]:.2e}  dq {errs[1]:.2e}  "
              f"dk {errs[2]:.2e}  dv {errs[3]:.2e}", flush=True)
        del out, grads
    torch.cuda.empty_cache()
    return rows


def flex_block_mask(n, blocks, ok):
    from torch.nn.attention.flex_attention import BlockMask

    NC = n // CHUNK
    c = torch.arange(NC, device=DEVICE)
    nw = WINDOW // BLK
    win = c[:, None] - nw + torch.arange(nw, device=DEVICE)
    idx = torch.cat([win, blocks], 1)
    good = torch.cat([win >= 0, ok], 1)
    order = torch.sort((~good).to(torch.int8), dim=1, stable=True).indices
    full_idx = torch.where(good.gather(1, order), idx.gather(1, order), 0).to(torch.int32)
    full_num = good.sum(1).to(torch.int32)
    kv_num = torch.ones(NC, dtype=torch.int32, device=DEVICE)
    kv_idx = c.to(torch.int32)[:, None]
    # BlockMask takes index lists as wide as the number of key blocks
    NB = n // BLK
    full_idx = torch.cat([full_idx, full_idx.new_zeros(NC, NB - full_idx.shape[1])], 1)
    kv_idx = torch.cat([kv_idx, kv_idx.new_zeros(NC, NB - 1)], 1)

    # the whole pattern as a mask_mod too: compiled Flex evaluates it only on the partial
    # (diagonal) blocks, eager Flex evaluates it everywhere and ignores the block lists
    table = torch.zeros(NC, NB, dtype=torch.bool, device=DEVICE)
    table[c[:, None].expand_as(blocks)[ok], blocks[ok]] = True

    def pattern(b, h, q_idx, kv_idx):
        i0 = (q_idx // CHUNK) * CHUNK
        return (q_idx >= kv_idx) & ((kv_idx >= i0 - WINDOW) | table[q_idx // CHUNK, kv_idx // BLK])

    return BlockMask.from_kv_blocks(kv_num[None, None], kv_idx[None, None], full_num[None, None],
                                    full_idx[None, None], BLOCK_SIZE=BLK, mask_mod=pattern, seq_lengths=(n, n))


def timed(fn, backward, inputs):
    """(median ms, peak MiB) of fn() or fn().backward(dout)."""
    import triton

    if backward:
        out = fn()
        dout = torch.randn_like(out)
        del out

        def step():
            fn().backward(dout)
    else:
        def step():
            with torch.no_grad():
                fn()
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**20
    ms = triton.testing.do_bench(step, grad_to_none=inputs if backward else None, warmup=25, rep=100,
                                 return_mode="median")
    return ms, peak


def sweep(n, wide=False, caps=False):
    q, k, v = make_qkv(n, torch.bfloat16, requires_grad=True)
    _, _, pos, valid = make_pattern(n)
    fwd_cands = [(128, 64, 4, 3)]  # first run: (128, 64, 4, 3) 2.95 ms, (128, 64, 8, 3) 3.15, (128, 128, 8, 3) 3.74
    # session 11, a forward with its row indices a tile ahead (reverted): (128, 32, 4, 3) 3.43 ms, (128, 32, 4, 4)
    # 3.47, (128, 32, 8, 3) 3.74, (128, 64, 8, 3) 4.75, (64, 64, 4, 3) 4.46, against 3.16 (none spilled)
    # dq tiles of a whole chunk (128) also form the selected keys' dk, dv (fused)
    # session 8 (H200, 128k fwd+bwd): the chunk's 128 queries held as two halves of 64 with 64-key tiles
    # 13.13-22.72 ms (110-138 spilled registers), 64-query tiles adding their dk, dv shares atomically
    # 14.04-15.75, against 12.69 for (128, 32, 4, 3) (22 spills): benchmarks/RESULTS.md
    # session 9: the fused tile's dk, dv formed transposed (Q^T dS, dO^T P: M = head dim), so 64-key tiles again
    # session 11: the selected keys' dv emitted before dP exists (offline: (128, 64, 8, 3) and (128, 32, 8, 3)
    # no spills at 255 / 184 registers)
    bwd_cands = [
        dict(dq=(128, 32, 4, 3), dkv=(32, 64, 4, 3)),
        dict(dq=(128, 64, 8, 3), dkv=(32, 64, 4, 3)),
        dict(dq=(128, 32, 8, 3), dkv=(32, 64, 4, 3)),
        dict(dq=(64, 32, 4, 3), dkv=(32, 64, 4, 3), sel=(32, 128, 4, 3)),  # unfused, as in the first run
    ]
    if wide:  # the launch space again, on this device
        fwd_cands += [(128, 64, 8, 3), (128, 32, 4, 3), (128, 64, 4, 4), (128, 32, 4, 4), (128, 128, 8, 2),
                      (64, 64, 4, 3), (64, 32, 4, 3), (64, 64, 4, 4)]
        bwd_cands += [dict(dq=dq, dkv=(32, 128, 4, 3)) for dq in
                      [(128, 64, 4, 3), (128, 16, 4, 3), (128, 32, 4, 4), (128, 32, 8, 3), (128, 64, 8, 3),
                       (128, 32, 4, 2), (128, 16, 4, 4)]]
        bwd_cands += [dict(dq=(128, 32, 4, 3), dkv=dkv) for dkv in
                      [(64, 128, 8, 3), (64, 64, 4, 3), (32, 64, 4, 3), (64, 128, 4, 3), (16, 128, 4, 3)]]
    if caps:  # session 10: Nsight Compute found the kernels latency-bound at 2 warps per scheduler (245-255
        # registers) and the dq / local dk, dv kernels spilling; a fifth entry caps the registers per thread so
        # that 2-3 programs share a multiprocessor (spills counted offline by ptxas for sm_90a in the comments)
        fwd_cands = [(128, 64, 4, 3), (128, 32, 4, 3, 168), (128, 32, 8, 3, 128), (128, 64, 8, 2, 128),
                     (128, 32, 8, 2, 128)]
        bwd_cands = [dict(dq=dq, dkv=(32, 128, 4, 3)) for dq in
                     [(128, 32, 4, 3), (128, 16, 4, 3),  # 136 B spilled / none (232 registers)
                      (128, 32, 8, 3, 128), (128, 32, 8, 2, 128), (128, 16, 8, 3, 128)]]
        bwd_cands += [dict(dq=(128, 32, 4, 3), dkv=dkv) for dkv in [(32, 64, 4, 3), (32, 64, 4, 3, 128),
                                                                    (64, 64, 8, 3, 128)]]

    def fn():
        return sat.sparse_attention_indexed(q, k, v, pos, valid, **kw())

    best = None
    for cand in fwd_cands:
        sat.KERNEL_CONFIG["fwd"] = cand
        try:
            ms, _ = timed(fn, False, None)
        except Exception as e:  # a config that does not compile on this device is skipped
            print(f"  fwd {cand}: failed {type(e).__name__}: {str(e)[:120]}", flush=True)
            continue
        print(f"  fwd {cand}: {ms:.3f} ms", flush=True)
        if best is None or ms < best[0]:
            best = (ms, cand)
    sat.KERNEL_CONFIG["fwd"] = best[1]
    best_b = None
    for cand in bwd_cands:
        sat.KERNEL_CONFIG.update(cand)
        try:
            correctness(4096, torch.bfloat16, NBLK, ("indexed",))  # each launch setting is a kernel variant
            ms, _ = timed(fn, True, [q, k, v])
        except Exception as e:
            print(f"  bwd {cand}: failed {type(e).__name__}: {str(e)[:120]}", flush=True)
            continue
        print(f"  fwd+bwd {cand}: {ms:.3f} ms", flush=True)
        if best_b is None or ms < best_b[0]:
            best_b = (ms, cand)
    sat.KERNEL_CONFIG.update(best_b[1])
    print(f"  kept: {sat.KERNEL_CONFIG}", flush=True)
    report_registers()


def report_registers():
    """Registers and spills per compiled variant of the attention kernels (16-bit, 128k sweep)."""
    from genossa.kernels import sparse_attention_bwd as bwd
    from genossa.kernels import sparse_attention_fwd as fwd

    for fn in (fwd._sparse_attn_fwd_kernel, bwd._dq_kernel, bwd._dkv_local_kernel):
        for entry in getattr(fn, "device_caches", {}).values():
            for kernel in entry[0].values():
                md = kernel.metadata
                try:  # constants are keyed by name or by (argument index,), by triton version
                    names = kernel.src.fn.arg_names
                    consts = {names[k[0]] if isinstance(k, tuple) else k: v for k, v in kernel.src.constants.items()}
                except Exception:
                    consts = {}
                tile = {k: consts[k] for k in ("BLOCK_M", "BLOCK_N", "FUSED_SEL") if k in consts}
                print(f"  {fn.__name__} {tile} warps {md.num_warps} stages {md.num_stages}: "
                      f"{kernel.n_regs} registers, {kernel.n_spills} spills", flush=True)


def timing(n, dense_max, gathered_max, flex_fn):
    q, k, v = make_qkv(n, torch.bfloat16, requires_grad=True)
    blocks, ok, pos, valid = make_pattern(n)
    pairs = useful_pairs(n, valid)
    flops_f = 4.0 * D * H * pairs
    rows = []

    def record(name, fn, inputs, flops_fwd):
        for mode, backward in (("fwd", False), ("fwd+bwd", True)):
            try:
                ms, peak = timed(fn, backward, inputs)
                tf = flops_fwd * (3.5 if backward else 1.0) / ms / 1e9
                rows.append((n, name, mode, ms, tf, peak))
                print(f"  n={n:>8} {name:<22} {mode:<8} {ms:9.3f} ms {tf:7.1f} TFLOP/s {peak:10.0f} MiB", flush=True)
            except Exception as e:
                print(f"  n={n:>8} {name:<22} {mode:<8} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
                rows.append((n, name, mode, float("nan"), float("nan"), float("nan")))
            torch.cuda.empty_cache()

    record("ours (indexed)", lambda: sat.sparse_attention_indexed(q, k, v, pos, valid, **kw()), [q, k, v], flops_f)
    use = sat.usable_selection(pos, valid, q_start=0, chunk_size=CHUNK, window=WINDOW, causal=True)
    rws, cnt = sat.compact_selection(use, pos, indexed=True, k_start=0)
    scale = 1 / math.sqrt(D)
    kb = torch.zeros(k.shape[:3], device=DEVICE)  # no key bias: the pattern of the other rows
    record("ours (kernels only)",
           lambda: sat.SparseAttentionFunction.apply(q, k, v, kb, None, None, None, rws, cnt, CHUNK, WINDOW, True,
                                                     0, 0, scale),
           [q, k, v], flops_f)
    # the same, key biases laid out per head ([B, H, Tk] memory): contiguous loads of a tile's biases
    kb_h = torch.zeros(k.shape[0], H, n, device=DEVICE).transpose(1, 2)
    record("ours (kernels, kb by head)",
           lambda: sat.SparseAttentionFunction.apply(q, k, v, kb_h, None, None, None, rws, cnt, CHUNK, WINDOW, True,
                                                     0, 0, scale),
           [q, k, v], flops_f)
    if n <= gathered_max:
        sk = gather_selected(k.detach(), pos).requires_grad_()
        sv = gather_selected(v.detach(), pos).requires_grad_()
        record("ours (gathered sel_k)",
               lambda: sat.sparse_attention_triton(q, k, v, sk, sv, pos, valid, **kw()), [q, k, v, sk, sv], flops_f)
        del sk, sv
        torch.cuda.empty_cache()
    if flex_fn is not None:
        bm = flex_block_mask(n, blocks, ok)
        qf, kf, vf = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
        record("FlexAttention", lambda: flex_fn(qf, kf, vf, block_mask=bm), [qf, kf, vf], flops_f)
        if n == 16384:  # the same pattern: the outputs agree
            with torch.no_grad():
                a = flex_fn(qf, kf, vf, block_mask=bm).transpose(1, 2).float()
                b = sat.sparse_attention_indexed(q, k, v, pos, valid, **kw()).float()
            print(f"  Flex vs ours at n={n}, bf16: rel {rel(a, b):.2e}", flush=True)
        del qf, kf, vf, bm
    if n <= dense_max:
        qd, kd, vd = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
        dense_f = 4.0 * D * H * n * (n + 1) / 2
        record("dense SDPA causal",
               lambda: torch.nn.functional.scaled_dot_product_attention(qd, kd, vd, is_causal=True), [qd, kd, vd],
               dense_f)
        del qd, kd, vd
    torch.cuda.empty_cache()
    return rows, pairs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16384,131072,1048576")
    ap.add_argument("--dense-max", type=int, default=131072)
    ap.add_argument("--gathered-max", type=int, default=131072)
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--wide-sweep", action="store_true", help="sweep many more launch settings")
    ap.add_argument("--cap-sweep", action="store_true", help="sweep launch settings with register caps")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--pattern", choices=("random", "prefix"), default="random", help="the blocks' choice: PATTERN")
    ap.add_argument("--config", type=json.loads, default={},
                    help='launch settings over KERNEL_CONFIG, e.g. \'{"fwd": [128, 32, 4, 3]}\'')
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile the kernels (torch.profiler) of one fwd+bwd at n=N, last")
    args = ap.parse_args()
    import triton

    global PATTERN
    PATTERN = args.pattern
    sat.KERNEL_CONFIG.update({k: tuple(v) if isinstance(v, list) else v for k, v in args.config.items()})

    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name()}", flush=True)
    t0 = time.time()
    check_rows = []
    if not args.no_check:
        print("1. correctness vs naive_sparse_attention (fp32 reference), relative error", flush=True)
        for n, dtype, nblk, layouts in [
            (4096, torch.bfloat16, NBLK, ("indexed", "gathered")),
            (4096, torch.float32, NBLK, ("indexed", "gathered")),
            (16384, torch.bfloat16, NBLK, ("indexed",)),
            (65536, torch.bfloat16, 4, ("indexed",)),
        ]:
            try:
                check_rows += correctness(n, dtype, nblk, layouts)
            except Exception as e:
                print(f"  n={n} {dtype}: failed {type(e).__name__}: {str(e)[:300]}", flush=True)
        print(f"   ({time.time() - t0:.0f} s)", flush=True)
    if not args.no_sweep:
        print("2. launch sweep at n=131072, bf16", flush=True)
        try:
            sweep(131072, wide=args.wide_sweep, caps=args.cap_sweep)
        except Exception as e:
            print(f"  sweep failed {type(e).__name__}: {str(e)[:300]}", flush=True)
        print(f"   ({time.time() - t0:.0f} s)", flush=True)
    flex_fn = None
    if not args.no_flex:
        from torch.nn.attention.flex_attention import flex_attention

        flex_fn = torch.compile(flex_attention, dynamic=False)
    print(f"3. timing, bf16, B=1, 8 heads x 64, chunk 128, window 512, 16 selected blocks of 128 ({PATTERN}); "
          f"{sat.KERNEL_CONFIG}", flush=True)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        r, pairs = timing(n, args.dense_max, args.gathered_max, flex_fn)
        print(f"   n={n}: {pairs / n:.0f} keys per query on average ({time.time() - t0:.0f} s)", flush=True)
        rows += r
    print("\n## correctness (relative error vs fp32 reference)")
    print("| n | dtype | layout | K | out | dq | dk | dv |\n|---|---|---|---|---|---|---|---|")
    for n, dt, layout, K, *e in check_rows:
        print(f"| {n} | {dt} | {layout} | {K} | " + " | ".join(f"{x:.1e}" for x in e) + " |")
    print("\n## timing (median ms, TFLOP/s of useful work, peak MiB)")
    print("| n | impl | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | peak MiB (fwd+bwd) |")
    print("|---|---|---|---|---|---|---|")
    by = {}
    for n, name, mode, ms, tf, peak in rows:
        by.setdefault((n, name), {})[mode] = (ms, tf, peak)
    for (n, name), d in by.items():
        f, fb = d.get("fwd", (float("nan"),) * 3), d.get("fwd+bwd", (float("nan"),) * 3)
        print(f"| {n} | {name} | {f[0]:.2f} | {f[1]:.0f} | {fb[0]:.2f} | {fb[1]:.0f} | {fb[2]:,.0f} |")
    print(f"\nkernel config: {sat.KERNEL_CONFIG}\ntotal {time.time() - t0:.0f} s")
    if args.profile:
        profile_kernels(args.profile)


def profile_kernels(n):
    """GPU time per kernel of 3 forward+backward calls of the kernels alone at n."""
    from gpu_profile import kernel_table

    q, k, v = make_qkv(n, torch.bfloat16, requires_grad=True)
    _, _, pos, valid = make_pattern(n)
    use = sat.usable_selection(pos, valid, q_start=0, chunk_size=CHUNK, window=WINDOW, causal=True)
    rws, cnt = sat.compact_selection(use, pos, indexed=True, k_start=0)

    kb = sat._by_head(torch.zeros(k.shape[:3], device=DEVICE))  # as sparse_attention_indexed passes it

    def step():
        out = sat.SparseAttentionFunction.apply(q, k, v, kb, None, None, None, rws, cnt, CHUNK, WINDOW, True, 0, 0,
                                                1 / math.sqrt(D))
        out.backward(torch.ones_like(out))

    print(kernel_table(step, repeats=3, title=f"kernels of 3 fwd+bwd at n={n}", rows=10, width=40))


if __name__ == "__main__":
    main()
