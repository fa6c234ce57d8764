"""Which source lines of a training step produce its elementwise traffic (what fused kernels can save).

Runs one forward + backward of a model preset on the CPU under a TorchDispatchMode that records,
for every op other than matmuls and views, the bytes of its output and the source line that caused
it: the calling genossa frames in forward, and in backward the forward frames of the autograd node
being run (anomaly mode keeps them). Ops inside the naive SSD and attention references are left
out (on a GPU those are Triton kernels). Prints the top lines by bytes written.

    python benchmarks/elementwise_trace.py --preset small --length 2048 --kernels naive
    TRITON_INTERPRET=1 python benchmarks/elementwise_trace.py --preset base --inference --kernels triton

--inference traces one forward as `genossa embed` runs it on a GPU (fp32 weights under bf16
autocast, no autograd); with --kernels triton under the interpreter the fused kernels run outside
torch's dispatch, so what is left is what a GPU forward spends on torch's own elementwise ops.

Bytes are those of the outputs, in the model's dtype (bf16 by default, as a GPU step runs); the
ranking, not the absolute time, is what carries over to a GPU profile (benchmarks/RESULTS.md,
session 4: the norms were two thirds of these bytes before they were fused).
"""
from __future__ import annotations

import argparse
import collections
import re
import traceback

from checkout import use_checkout

VIEWS = {
    "view", "permute", "transpose", "expand", "unsqueeze", "squeeze", "t", "detach", "_unsafe_view", "unfold",
    "select", "slice", "as_strided", "alias", "split", "split_with_sizes", "unbind", "chunk", "narrow",
    "_reshape_alias", "reshape", "lift_fresh", "empty", "zeros", "ones", "full", "empty_like", "zeros_like",
    "ones_like", "new_zeros", "new_empty", "new_full", "arange", "scalar_tensor", "_local_scalar_dense",
    "diagonal", "mm", "addmm", "bmm",
}
REFERENCES = ("ops/ssd/naive.py", "ops/sparse_attention/naive.py")
FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _site(frames: list[tuple[str, int]]) -> str | None:
    """The last two genossa frames, or None inside a reference kernel."""
    ours = [(f.split("genossa/")[-1], line) for f, line in frames if "genossa/" in f]
    if any(any(r in f for r in REFERENCES) for f, _ in ours):
        return None
    return "; ".join(f"{f}:{line}" for f, line in ours[-2:]) or "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--kernels", default="naive",
                    help="model.kernels: naive (the CPU); on a GPU, auto shows what the fused kernels leave")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--inference", action="store_true", help="one forward under bf16 autocast, fp32 weights")
    args = ap.parse_args()
    use_checkout()
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from genossa.models.config import PRESETS
    from genossa.models.hybrid import GenossaLM

    torch.manual_seed(0)
    model = GenossaLM(PRESETS[args.preset](kernels=args.kernels))
    if not args.inference:
        model = model.to(torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    tokens = torch.randint(0, 4, (1, args.length))
    stats: dict[tuple[str, str, str], list[int]] = collections.defaultdict(lambda: [0, 0])

    class Trace(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            if name in VIEWS or not isinstance(first, torch.Tensor):
                return out
            node = torch._C._current_autograd_node()
            if node is not None:  # backward: where the node's forward ran
                text = "\n".join(map(str, node.metadata.get("traceback_", [])))
                site = _site([(f, int(n)) for f, n in FRAME.findall(text)])
                site = None if site is None else "bwd " + site
            else:
                site = _site([(f.filename, f.lineno) for f in traceback.extract_stack()])
            if site is not None:
                row = stats[(name, str(first.dtype).replace("torch.", ""), site)]
                row[0] += 1
                row[1] += first.numel() * first.element_size()
            return out

    if args.inference:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            model(tokens)  # warm-up outside the trace
            with Trace():
                model(tokens)
    else:
        model.compute_loss(tokens).loss.backward()  # warm-up outside the trace
        model.zero_grad(set_to_none=True)
        with torch.autograd.set_detect_anomaly(True, check_nan=False), Trace():
            model.compute_loss(tokens).loss.backward()
    total = sum(b for _, b in stats.values())
    print(f"{args.preset}, {args.length} tokens, {args.dtype}, kernels={args.kernels}: "
          f"{total / 2**20:,.0f} MiB written by elementwise ops ({total / args.length / 1e3:,.0f} kB/token)")
    print("\n| MiB | calls | op | dtype | source (forward line; bwd = its backward) |\n|---:|---:|---|---|---|")
    for (name, dtype, site), (calls, nbytes) in sorted(stats.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"| {nbytes / 2**20:,.1f} | {calls} | {name} | {dtype} | {site} |")


if __name__ == "__main__":
    main()
