"""bf16 weights for inference: how far scores and embeddings move, and what it gains (one GPU).

The bundled pretrained model (`mini-prokaryotes`) scores all 3 SNVs at each of --positions
positions of the bundled E. coli slice (8,192-base windows, downstream 1,024) and embeds
--windows windows, three ways: fp32 (the reference), bf16 autocast (what `--precision bf16` does
now) and the weights cast to bf16 under the same autocast. Prints, against fp32, the Pearson and
Spearman correlation of the LLRs and the largest |difference| over their spread, the cosine
similarity of the pooled embeddings, and the time of each scoring pass.

    python3 benchmarks/bf16_weights_check.py --positions 1024 --windows 32
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from genossa import resources
from genossa.evaluate.variants import pearson, spearman
from genossa.inference import for_precision, load_model
from genossa.io.fasta import FastaGenome
from genossa.pretrained import resolve_checkpoint
from genossa.score import AlleleJob, AlleleScorer, StrandView

CONTIG = "NC_007779.1"
OTHER = {"A": "CGT", "C": "AGT", "G": "ACT", "T": "ACG"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--window", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--device", default="cuda", help="cuda; cpu for a smoke test at small sizes")
    args = ap.parse_args()

    checkpoint, _ = resolve_checkpoint(None)
    dev = torch.device(args.device)
    fp32 = load_model(checkpoint, dev).model
    bf16 = for_precision(copy.deepcopy(fp32), "bf16-weights")
    genome = FastaGenome([resources.ECOLI_FASTA])
    view = StrandView(genome, reverse=False)
    start = 100_000
    seq = genome.fetch(CONTIG, start, start + args.positions)
    jobs = [AlleleJob(i, 0, CONTIG, start + p, b, alt) for i, (p, b, alt) in
            enumerate((p, b, a) for p, b in enumerate(seq) for a in OTHER[b.upper()])]

    runs = {"fp32": (fp32, "fp32"), "bf16_autocast": (fp32, "bf16"), "bf16_weights": (bf16, "bf16-weights")}
    llr, emb, seconds = {}, {}, {}
    tokens = torch.randint(0, 4, (args.windows, args.window), generator=torch.Generator().manual_seed(0)).to(dev)
    for name, (model, precision) in runs.items():
        scorer = AlleleScorer(model, window=args.window, downstream=1024, batch_size=args.batch_size,
                              precision=precision)
        scorer.score_strand(view, jobs[:48])  # compile / warm up
        _sync(dev)
        t = time.perf_counter()
        scores = scorer.score_strand(view, jobs)
        _sync(dev)
        seconds[name] = time.perf_counter() - t
        llr[name] = np.array([scores[i].llr for i in range(len(jobs))])
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            emb[name] = model(tokens).embeddings.float().mean(1)

    rows = []
    for name in runs:
        diff = np.abs(llr[name] - llr["fp32"])
        cos = torch.nn.functional.cosine_similarity(emb[name], emb["fp32"], dim=-1)
        rows.append({"run": name, "variants": len(jobs), "seconds": round(seconds[name], 3),
                     "variants_per_s": round(len(jobs) / seconds[name], 1),
                     "llr_pearson": round(pearson(llr[name], llr["fp32"]), 6),
                     "llr_spearman": round(spearman(llr[name], llr["fp32"]), 6),
                     "llr_max_abs_diff_over_sd": round(float(diff.max() / llr["fp32"].std()), 4),
                     "llr_sd": round(float(llr["fp32"].std()), 4),
                     "embedding_cosine_min": round(float(cos.min()), 6)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| run | variants/s | LLR Pearson | LLR Spearman | max abs diff / sd | embedding cosine (min) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['variants_per_s']} | {r['llr_pearson']} | {r['llr_spearman']} | "
              f"{r['llr_max_abs_diff_over_sd']} | {r['embedding_cosine_min']} |")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
