"""SSD scan on one GPU: genossa's Triton kernels (with importance) beside mamba_ssm's Triton SSD.

1. Correctness: ours (bf16, fp32) against the fp32 PyTorch reference `ssd_chunked` at 4k-64k:
   y, final state, importance and every gradient (D, z and an initial state included); mamba_ssm
   against the same reference for scale.
2. Forward launch-parameter sweep of ours at one length (positions per block, warps, group Gram,
   group Gram or per-head C B^T), the fastest is kept.
3. Timing at n = 16k, 128k, 1M (B=1, 16 heads x 64, d_state 128, one group, chunk 256, bf16,
   D, no gate): forward and forward+backward, median ms (triton.testing.do_bench), TFLOP/s of
   the nominal chunked-SSD work (same count for both; our importance work is not counted) and
   peak memory (torch.cuda.max_memory_allocated over one call, inputs included).
4. Per-kernel CUDA time at 128k (torch.profiler). A short table is printed last.

mamba_ssm is loaded from its PyPI source, never vendored: here, once,
    MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps --no-binary :all: --no-build-isolation \
        mamba-ssm==2.3.2.post1 -d .peers && tar xzf .peers/mamba_ssm-2.3.2.post1.tar.gz -C .peers
then `--mamba .peers/mamba_ssm-2.3.2.post1`. Its package __init__ imports compiled extensions, so
an empty `mamba_ssm` package pointing at the source folder is registered first; its Triton SSD
needs only torch, triton and einops.

genossa need not be installed: the repository root goes on sys.path and, where the install
mapping of kernels/ to genossa.kernels (pyproject package-dir) is missing, genossa.kernels is
registered from the kernels/ folder.

    PYTHONUNBUFFERED=1 python3 benchmarks/ssd_bench.py --mamba .peers/mamba_ssm-2.3.2.post1
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch
from checkout import use_checkout

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda"
SHAPE = dict(H=16, P=64, G=1, N=128)


def import_genossa():
    use_checkout()
    from genossa.ops.ssd import triton as ssd_triton_mod
    from genossa.ops.ssd.naive import ssd_chunked

    return ssd_triton_mod, ssd_chunked


def import_mamba(path: Path):
    pkg = types.ModuleType("mamba_ssm")
    pkg.__path__ = [str(path / "mamba_ssm")]
    sys.modules["mamba_ssm"] = pkg
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    return mamba_chunk_scan_combined


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make_inputs(T, dtype, *, gate=False, initial=False, seed=0, requires_grad=False):
    H, P, G, N = SHAPE["H"], SHAPE["P"], SHAPE["G"], SHAPE["N"]
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    dev = DEVICE

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device=dev) * scale).to(dtype)

    inp = dict(
        x=randn(1, T, H, P),
        # dt as after softplus: a spread of memories, from a few to a few hundred steps
        dt=torch.exp(torch.rand(1, T, H, generator=g, device=dev) * 4 - 6) * 4,
        A=-torch.linspace(0.5, 4.0, H, device=dev),
        B=randn(1, T, G, N, scale=N**-0.5),
        C=randn(1, T, G, N, scale=N**-0.5),
        D=torch.randn(H, generator=g, device=dev),
        z=randn(1, T, H, P) if gate else None,
        initial_state=torch.randn(1, H, P, N, generator=g, device=dev) if initial else None,
    )
    if requires_grad:
        for t in inp.values():
            if t is not None:
                t.requires_grad_(True)
    return inp


def nominal_flops(T, H=16, P=64, G=1, N=128, L=256):
    """Forward FLOPs of the chunked SSD per the usual count: chunk states and state read-out
    (2 P N each per head and position), causal intra-chunk output (L P per head and position on
    average) and C B^T (L N per group and position on average)."""
    return 2 * T * (H * (2 * P * N + L * P / 2) + G * L * N / 2)


def grads_of(fn, inp, dy, dfinal, **kw):
    leaves = {n: (t.detach().clone().requires_grad_(True) if t is not None else None) for n, t in inp.items()}
    y, final, imp = fn(leaves, **kw)
    loss = (y.float() * dy).sum() + (final.float() * dfinal).sum()
    loss.backward()
    return y.detach(), final.detach(), imp, {n: t.grad for n, t in leaves.items() if t is not None}


def correctness(ssd_triton_mod, ssd_chunked, mamba, lengths):
    print("== correctness: relative error ||a-b||/||b|| vs the fp32 reference (ssd_chunked)", flush=True)
    tol = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2e-2, 3e-2)}
    ok = True
    rows = []
    for T in lengths:
        for dtype in (torch.float32, torch.bfloat16):
            inp = make_inputs(T, dtype, gate=True, initial=True, seed=T)
            gen = torch.Generator(device=DEVICE).manual_seed(1)
            dy = torch.randn(inp["x"].shape, generator=gen, device=DEVICE)
            dfinal = torch.randn(inp["initial_state"].shape, generator=gen, device=DEVICE)
            up = {n: (t.float() if t is not None else None) for n, t in inp.items()}

            def ref(leaves):
                return ssd_chunked(**leaves, chunk_size=256, return_importance=True)

            def ours(leaves):
                return ssd_triton_mod.ssd_triton(
                    **leaves, chunk_size=256, return_final_state=True, return_importance=True
                )

            y0, f0, i0, g0 = grads_of(ref, up, dy, dfinal)
            try:
                y1, f1, i1, g1 = grads_of(ours, inp, dy, dfinal)
            except Exception as e:  # report and go on to the timings
                print(f"T={T:6d} {str(dtype):15s} ERROR {type(e).__name__}: {str(e)[:300]}", flush=True)
                rows.append((T, dtype, "ERROR"))
                ok = False
                continue
            errs = {"y": rel(y1, y0), "final": rel(f1, f0), "norm": rel(i1.norm, i0.norm),
                    "change": rel(i1.change, i0.change)}
            errs.update({f"d{n}": rel(g1[n], g0[n]) for n in g0})
            ftol, gtol = tol[dtype]
            bad = [k for k, v in errs.items() if not (v < (ftol if k in ("y", "final", "norm", "change") else gtol))]
            ok &= not bad
            line = " ".join(f"{k}={v:.1e}" for k, v in errs.items())
            if mamba is not None:
                # mamba_ssm on the same inputs (its final state, no importance), for scale
                def theirs(leaves):
                    y, f = mamba(leaves["x"], leaves["dt"], leaves["A"], leaves["B"], leaves["C"], 256,
                                 D=leaves["D"], z=leaves["z"], initial_states=leaves["initial_state"],
                                 return_final_states=True)
                    return y, f, None

                y2, f2, _, g2 = grads_of(theirs, inp, dy, dfinal)
                line += f" | mamba_ssm: y={rel(y2, y0):.1e} final={rel(f2, f0):.1e} dx={rel(g2['x'], g0['x']):.1e}" \
                        f" ddt={rel(g2['dt'], g0['dt']):.1e} dB={rel(g2['B'], g0['B']):.1e}"
            status = "PASS" if not bad else f"FAIL {bad}"
            print(f"T={T:6d} {str(dtype):15s} {status}: {line}", flush=True)
            rows.append((T, dtype, status))
            del inp, up, g0, g1
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    return ok, rows


def bench(fn, grad_to_none=None):
    import triton

    return triton.testing.do_bench(fn, grad_to_none=grad_to_none, return_mode="median")


def peak_mib(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def run_cases(ssd_triton_mod, mamba, T):
    """{name: (fwd ms, fwd+bwd ms, peak MiB of fwd+bwd)} at length T."""
    out = {}
    inp = make_inputs(T, torch.bfloat16, requires_grad=True)
    leaves = [t for t in inp.values() if t is not None]
    dy = torch.randn_like(inp["x"])

    def ours(imp):
        return lambda: ssd_triton_mod.ssd_triton(
            inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], chunk_size=256, return_importance=imp
        )

    def first(r):
        return r[0] if isinstance(r, tuple) else r

    cases = {"genossa (+importance)": ours(True), "genossa (no importance)": ours(False)}
    if mamba is not None:
        cases["mamba_ssm"] = lambda: mamba(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], 256, D=inp["D"])
    for name, f in cases.items():

        def fb():
            first(f()).backward(dy)

        try:
            with torch.no_grad():
                fwd = bench(f)
            fwdbwd = bench(fb, grad_to_none=leaves)
            for t in leaves:
                t.grad = None
            mem = peak_mib(fb)
        except Exception as e:  # report and go on
            print(f"  n={T:8d} {name:24s} ERROR {type(e).__name__}: {str(e)[:300]}", flush=True)
            torch.cuda.empty_cache()
            continue
        for t in leaves:
            t.grad = None
        out[name] = (fwd, fwdbwd, mem)
        print(f"  n={T:8d} {name:24s} fwd {fwd:8.3f} ms  fwd+bwd {fwdbwd:8.3f} ms  peak {mem:9.0f} MiB", flush=True)
    del inp, leaves, dy
    torch.cuda.empty_cache()
    return out


SWEEP = [  # forward launch parameters (the backward keeps KERNEL_CONFIG["bwd"])
    dict(block_l=b, num_warps=w, use_gram=g, bf16_scan=s)
    for b, w, g, s in [(32, 2, True, True), (64, 4, True, True), (32, 4, True, True), (64, 8, True, True),
                       (32, 2, True, False), (64, 4, True, False), (64, 4, False, True)]
]


def sweep(ssd_triton_mod, T, configs=SWEEP):
    """Time the forward (with importance) under every launch configuration; keep the fastest."""
    print(f"== forward launch-parameter sweep at n={T}", flush=True)
    inp = make_inputs(T, torch.bfloat16, requires_grad=False)
    best = None
    for cfg in configs:
        ssd_triton_mod.KERNEL_CONFIG.update(fwd=dict(cfg))
        try:
            fwd = bench(lambda: ssd_triton_mod.ssd_triton(
                inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], chunk_size=256, return_importance=True))
        except Exception as e:  # a config that does not compile (registers, shared memory) is skipped
            print(f"  {cfg}: failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        print(f"  {cfg}: fwd {fwd:.3f} ms", flush=True)
        if best is None or fwd < best[0]:
            best = (fwd, cfg)
    if best is not None:
        ssd_triton_mod.KERNEL_CONFIG.update(fwd=best[1])
    print(f"  chosen: {ssd_triton_mod.KERNEL_CONFIG}", flush=True)
    del inp
    torch.cuda.empty_cache()


BWD_SWEEP = [  # backward launch parameters, timed as forward+backward with importance: the per-head chunk
    # kernels at 32 positions per tile (mma.sync) and at 64 (wgmma, with spills offline: session 11)
    dict(block_l=b, num_warps=w, use_gram=True, group_block_l=64, group_warps=8)
    for b, w in [(32, 4), (64, 8), (64, 4)]
]


def sweep_bwd(ssd_triton_mod, ssd_chunked, mamba, T, configs=BWD_SWEEP):
    """Check (4,096, against the reference) and time forward+backward under every backward launch
    configuration; keep the fastest that passes."""
    print(f"== backward launch-parameter sweep at n={T}", flush=True)
    best = None
    for cfg in configs:
        ssd_triton_mod.KERNEL_CONFIG.update(bwd=dict(cfg))
        try:
            ok, _ = correctness(ssd_triton_mod, ssd_chunked, None, [4096])
            inp = make_inputs(T, torch.bfloat16, requires_grad=True)
            leaves = [inp[k] for k in ("x", "dt", "A", "B", "C", "D")]
            dy = torch.randn_like(inp["x"])

            def fb():
                ssd_triton_mod.ssd_triton(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], chunk_size=256,
                                          return_importance=True)[0].backward(dy)

            ms = bench(fb, grad_to_none=leaves)
        except Exception as e:  # a config that does not compile (registers, shared memory) is skipped
            print(f"  {cfg}: failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        print(f"  {cfg}: fwd+bwd {ms:.3f} ms, check {'passed' if ok else 'FAILED'}", flush=True)
        if ok and (best is None or ms < best[0]):
            best = (ms, cfg)
        del inp, leaves, dy
        torch.cuda.empty_cache()
    if best is not None:
        ssd_triton_mod.KERNEL_CONFIG.update(bwd=best[1])
    print(f"  chosen: {ssd_triton_mod.KERNEL_CONFIG}", flush=True)


def profile(ssd_triton_mod, mamba, T):
    from torch.profiler import ProfilerActivity, profile as tprofile

    inp = make_inputs(T, torch.bfloat16, requires_grad=True)
    dy = torch.randn_like(inp["x"])
    runs = {"genossa (+importance)": lambda: ssd_triton_mod.ssd_triton(
        inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], chunk_size=256, return_importance=True)[0]}
    if mamba is not None:
        runs["mamba_ssm"] = lambda: mamba(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], 256, D=inp["D"])
    for name, f in runs.items():
        with torch.no_grad():  # the forward alone: which kernels the importance costs
            f()
            torch.cuda.synchronize()
            with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    f()
                torch.cuda.synchronize()
        print(f"== per-kernel CUDA time at n={T}, {name} forward (3 calls)", flush=True)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=60), flush=True)
    for name, f in runs.items():
        f().backward(dy)
        torch.cuda.synchronize()
        with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                f().backward(dy)
            torch.cuda.synchronize()
        print(f"== per-kernel CUDA time at n={T}, {name} (3 fwd+bwd)", flush=True)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60), flush=True)
    del inp, dy
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mamba", type=Path, default=ROOT / ".peers" / "mamba_ssm-2.3.2.post1",
                    help="unpacked mamba-ssm source folder (holds mamba_ssm/)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[16384, 131072, 1048576])
    ap.add_argument("--check-lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--sweep-length", type=int, default=131072)
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--bwd-sweep", action="store_true", help="also sweep the backward's launch parameters")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    import triton

    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    ssd_triton_mod, ssd_chunked = import_genossa()
    mamba = None
    if args.mamba.exists():
        mamba = import_mamba(args.mamba)
    else:
        print(f"mamba_ssm source not found at {args.mamba}: peer columns left out", flush=True)

    ok, check_rows = correctness(ssd_triton_mod, ssd_chunked, mamba, args.check_lengths)
    if not args.no_sweep:
        sweep(ssd_triton_mod, args.sweep_length)
    if args.bwd_sweep:
        sweep_bwd(ssd_triton_mod, ssd_chunked, mamba, args.sweep_length)
    print("== timing (bf16, B=1, H=16, P=64, N=128, G=1, chunk 256, D, no gate)", flush=True)
    results = {T: run_cases(ssd_triton_mod, mamba, T) for T in args.lengths}
    if not args.no_profile:
        profile(ssd_triton_mod, mamba, 131072)

    print("\n== summary", flush=True)
    print("correctness: " + ", ".join(f"{T}/{str(d).split('.')[-1]} {s}" for T, d, s in check_rows))
    print(f"kernel config: {ssd_triton_mod.KERNEL_CONFIG}")
    print("| n | impl | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | peak MiB | fwd / mamba | fwd+bwd / mamba |")
    print("|---|---|---|---|---|---|---|---|---|")
    for T, res in results.items():
        fl = nominal_flops(T)
        ref = res.get("mamba_ssm")
        for name, (f, fb, mem) in res.items():
            ratio = f"{f / ref[0]:.2f}x | {fb / ref[1]:.2f}x" if ref else "- | -"
            print(f"| {T // 1024}k | {name} | {f:.3f} | {fl / f / 1e9:.0f} | {fb:.3f} | {3 * fl / fb / 1e9:.0f} | "
                  f"{mem:.0f} | {ratio} |")
    print("correctness", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
