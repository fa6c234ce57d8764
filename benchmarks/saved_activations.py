"""What autograd keeps for backward, per module, in kB per token (CPU; issue 10's memory work).

Builds a preset with random weights in a dtype, runs one training forward (compute_loss) of n
tokens and tallies every tensor saved for backward (torch.autograd.graph.saved_tensors_hooks),
by the innermost module running when it was saved; storage shared by several saved tensors is
counted once. The first block is listed by submodule, the other blocks as one line.

    python benchmarks/saved_activations.py --preset small --dtype bfloat16 --tokens 4096

The PyTorch reference kernels (kernels=naive) run on the CPU, so the SSD and attention lines are
the reference's, not the Triton kernels' (which save far less); norms, projections, MLP and gate
are the same code on either.
"""
import argparse
import collections
from dataclasses import replace

import torch

from genossa.models import config as presets
from genossa.models.hybrid import GenossaLM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = GenossaLM(replace(getattr(presets, args.preset)(), kernels="naive")).to(getattr(torch, args.dtype))
    stack: list[str] = []

    def leave(module, args, output) -> None:  # returns None: a hook's return value would replace the output
        stack.pop()

    for name, module in model.named_modules():
        if name.startswith("blocks.") and not (name == "blocks.0" or name.startswith("blocks.0.")):
            name = "blocks.1.." if name.count(".") == 1 else None  # later blocks: one line
        if name is None:
            continue
        module.register_forward_pre_hook(lambda m, a, name=name: stack.append(name))
        module.register_forward_hook(leave)
    tally, seen = collections.Counter(), set()

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            tally[stack[-1] if stack else "(loss)"] += t.untyped_storage().nbytes()
        return t

    tokens = torch.randint(0, 4, (1, args.tokens))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.compute_loss(tokens)
    n = args.tokens
    print(f"saved for backward: {sum(tally.values()) / n / 1e3:.1f} kB/token ({args.preset}, {args.dtype}, "
          f"{n} tokens, reference kernels)")
    print("| module | kB/token |\n|---|---:|")
    for name, nbytes in tally.most_common(args.top):
        print(f"| {name or '(model)'} | {nbytes / n / 1e3:.2f} |")


if __name__ == "__main__":
    main()
