"""Compile the sparse attention's Triton kernels for an H100/H200 (sm_90a) on a machine without a GPU,
and report what decides their speed before any device time is spent: registers and spills (ptxas
-v), the wgmma shapes, shared memory, and how deep each loop's copies are pipelined (the
`async_wait {num = N}` at the top of each loop: 0 means every iteration waits for all its gathers).

Triton compiles here with a stand-in driver that names the target; the launchers run on CPU tensors
with each kernel compiled, never launched. The CPU machine's Triton and ptxas are newer than the GPU
image's (3.6), so counts differ a little from the device's (`attention_bench.py` reports the device's
registers and spills): use this to rank variants, the device to time them.

    python benchmarks/offline_compile.py                         # the kept launch settings
    python benchmarks/offline_compile.py --fwd 128,32,4,3,168 --dq 128,16,4,3 --dkv 32,64,4,3
    python benchmarks/offline_compile.py --ssd                   # the SSD scan's kernels instead

Under the GPU image's Triton (3.6; `python3 -m venv /tmp/t36 && /tmp/t36/bin/pip install torch==2.13.0
triton==3.6.0`, then this checkout with `pip install --no-deps -e .`) the counts matched the device's in
session 11 (the local dk, dv kernel: 160 registers, no spills, on both).
"""
from __future__ import annotations

import argparse
import collections
import re
import subprocess
import tempfile
from pathlib import Path

import torch
import triton
from checkout import use_checkout
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.jit import JITFunction

T, H, D, CHUNK, WINDOW, KEYS = 4096, 8, 64, 128, 512, 2048


class _TargetOnly:
    """Driver stand-in: the target to compile for, device 0, stream 0."""

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


def compile_only(compiled: list):
    """Make every kernel launch compile (warmup) and record (name, kernel) instead of running."""
    run = JITFunction.run

    def warm(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        compiled.append((self.fn.__name__, kernel))
        return kernel

    driver.set_active(_TargetOnly())
    JITFunction.run = warm


def ptxas_report(ptx: str) -> str:
    """ptxas -v's registers and spills for sm_90a (with the option Triton passes)."""
    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    ptxas = next(p for p in (bin_dir / "ptxas-blackwell", bin_dir / "ptxas") if p.exists())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        cmd = [str(ptxas), "-v", "--regAllocOptLevel=2", "--gpu-name=sm_90a", str(src), "-o", str(Path(tmp) / "k.o")]
        res = subprocess.run(cmd, check=False, capture_output=True, text=True)
    used = re.search(r"Used (\d+) registers", res.stderr)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", res.stderr)
    if not used:
        return f"ptxas failed: {res.stderr.strip()[:200]}"
    return f"{used.group(1)} registers, spill stores/loads {spill.group(1)}/{spill.group(2)} B"


def describe(name: str, kernel) -> str:
    wgmma = collections.Counter(re.findall(r"wgmma\.mma_async\.sync\.aligned\.(m\d+n\d+k\d+)", kernel.asm["ptx"]))
    waits = re.findall(r"scf\.for.*?async_wait[^{\n]*\{num = (\d+)", kernel.asm["ttgir"], flags=re.DOTALL)
    shapes = ", ".join(f"{s} x{c}" for s, c in sorted(wgmma.items()))
    return (f"{name}: {ptxas_report(kernel.asm['ptx'])}; shared {kernel.metadata.shared} B; wgmma {shapes}; "
            f"loop waits {waits}")


def setting(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fwd", type=setting, help="BLOCK_M,BLOCK_N,warps,stages[,register cap]")
    ap.add_argument("--dq", type=setting)
    ap.add_argument("--dkv", type=setting)
    ap.add_argument("--ssd", action="store_true", help="the SSD scan's kernels (forward with and without "
                                                       "importance, backward) at their KERNEL_CONFIG")
    args = ap.parse_args()
    use_checkout()
    if args.ssd:
        return compile_ssd()
    from genossa.kernels.sparse_attention_bwd import sparse_attention_bwd
    from genossa.kernels.sparse_attention_fwd import launch_setting, sparse_attention_fwd
    from genossa.ops.sparse_attention.triton import KERNEL_CONFIG

    fwd = launch_setting(args.fwd or KERNEL_CONFIG["fwd"])
    dq, dkv = args.dq or KERNEL_CONFIG["dq"], args.dkv or KERNEL_CONFIG["dkv"]
    compiled: list = []
    compile_only(compiled)
    q, k, v, do, out = (torch.randn(1, T, H, D, dtype=torch.bfloat16) for _ in range(5))
    kb, lse = torch.zeros(1, T, H), torch.zeros(H, T)
    rows = torch.zeros(1, T // CHUNK, KEYS, dtype=torch.int32)
    cnt = torch.zeros(1, T // CHUNK, dtype=torch.int32)
    kw = dict(chunk_size=CHUNK, window=WINDOW, causal=True, q_start=0, k_start=0, scale=D ** -0.5)
    sparse_attention_fwd(q, k, v, kb, None, None, None, rows, cnt, block_m=fwd[0], block_n=fwd[1], num_warps=fwd[2],
                         num_stages=fwd[3], maxnreg=fwd[4], **kw)
    sparse_attention_bwd(do, q, k, v, kb, None, None, None, rows, cnt, out, lse, dq_cfg=dq, dkv_cfg=dkv,
                         sel_cfg=KERNEL_CONFIG["sel"], **kw)
    print(f"sm_90a, bf16, indexed, chunk {CHUNK}, head dim {D}; fwd {fwd[:4]} cap {fwd[4]}, dq {dq}, dkv {dkv}")
    for name, kernel in compiled:
        if name != "_delta_kernel":
            print(" ", describe(name, kernel))


def compile_ssd():
    """The SSD kernels at the layer benchmark's shapes (16 heads x 64, d_state 128, chunk 256, bf16)."""
    from genossa.ops.ssd.triton import ssd_triton

    heads, head_dim, state = 16, 64, 128
    compiled: list = []
    compile_only(compiled)
    for importance in (True, False):
        compiled.clear()
        x = torch.randn(1, T, heads, head_dim, dtype=torch.bfloat16, requires_grad=True)
        B, C = (torch.randn(1, T, 1, state, dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
        dt, A, D = torch.rand(1, T, heads), -torch.rand(heads), torch.randn(heads)
        out = ssd_triton(x, dt, A, B, C, D, chunk_size=256, return_importance=importance)
        y = out[0] if importance else out
        if importance:  # the backward does not depend on importance: compiled once
            y.backward(torch.ones_like(y))
        print(f"sm_90a, bf16, SSD {heads} heads x {head_dim}, d_state {state}, chunk 256, importance {importance}")
        for name, kernel in compiled:
            print(" ", describe(name, kernel))


if __name__ == "__main__":
    main()
