"""How recency-ordered is a model's scan-informed selection? (issue 9 diagnostic, CPU)

Runs one window of the bundled genome's held-out contig through a model with each attention
block recording its Selection, and reports per block: the median distance of the selected keys
behind the chunk's local span, and the fraction of them among the `budget` most recent
candidates (a pure sliding-window extension would give 1.0; a uniform draw ~ budget / candidates).

    python benchmarks/selection_recency.py --bases 8192                 # the bundled model
    python benchmarks/selection_recency.py --bases 8192 --untrained tiny  # a fresh model of a preset
    python benchmarks/selection_recency.py --bases 8192 --selection change  # rank by the state change alone
"""
import argparse

import numpy as np
import torch

from genossa import resources
from genossa.io.fasta import FastaGenome
from genossa.models import config as presets
from genossa.models.hybrid import GenossaLM
from genossa.pretrained import DEFAULT_MODEL, resolve_checkpoint
from genossa.sequence.tokenize import tokenize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bases", type=int, default=8192)
    ap.add_argument("--untrained", metavar="PRESET", help="a randomly initialised model of this preset instead")
    ap.add_argument("--selection", choices=["scan", "change", "random", "strided"],
                    help="rank keys this way instead of the model's own rule (same weights)")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.untrained:
        model = GenossaLM(getattr(presets, args.untrained)())
    else:
        model = GenossaLM.from_pretrained(resolve_checkpoint(DEFAULT_MODEL)[0]).float()
    model.eval()
    seq = FastaGenome([str(resources.ECOLI_FASTA)]).fetch("NC_007779.1_2000000_2100000", 0, args.bases)
    for block in model.blocks:
        block.attention.record_selection = True
        if args.selection:  # the rule is read at each forward: switching it keeps the weights
            block.attention.selection = args.selection
    with torch.no_grad():
        model(torch.from_numpy(tokenize(seq).astype(np.int64))[None])
    print("| block | selected keys | median distance behind the local span | among the budget most recent "
          "| mean budget | median candidates |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, block in enumerate(model.blocks):
        attention, sel = block.attention, block.attention.last_selection
        pos, valid, budget = sel.pos[0], sel.valid[0], sel.budget[0]
        span_start = torch.arange(pos.shape[0])[:, None] * attention.chunk_size - attention.window
        behind = (span_start - 1 - pos).float()  # 0 = the key just before the local span
        recent = (behind < budget[:, None]) & valid
        print(f"| {i} | {int(valid.sum())} | {behind[valid].median().item():.0f} "
              f"| {recent.sum().item() / max(1, int(valid.sum())):.3f} | {budget.float().mean().item():.1f} "
              f"| {span_start[:, 0].clamp_min(0).float().median().item():.0f} |")


if __name__ == "__main__":
    main()
