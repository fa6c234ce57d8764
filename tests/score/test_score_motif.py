"""Sanity of the LLR on a trained model: SNVs that break a strongly conserved, repeated motif of
the training genome score lower than SNVs at random positions.

The training genome is the first 12 kb of the bundled E. coli record with a 16-base motif
written over it every 90-150 bases (99 copies). The tiny preset trains 50 steps on 128-base
windows (~8 s on one CPU core) for each of two seeds. Motif SNVs hit motif bases 6-15 (the
model has seen the motif's start); random SNVs lie >= 24 bases beyond any copy.

Stated effect size, required for each seed (measured: mean difference -4.86 and -4.16 nats,
AUC 0.963 and 0.974, Cohen's d 3.04 and 2.81): mean LLR(motif) - mean LLR(random) <= -2 nats,
P(LLR(motif) < LLR(random)) >= 0.85, Cohen's d >= 1.5.
"""
from __future__ import annotations

import numpy as np
import pysam
import pytest
import torch

from genossa import resources
from genossa.models.config import tiny
from genossa.models.hybrid import GenossaLM
from genossa.score import score_variants
from genossa.sequence.tokenize import tokenize

from score_helpers import write_vcf

MOTIF = "GATTACAGGCTTCCGA"
STEPS, TRAIN_WINDOW, BATCH = 50, 128, 8
OTHER = {"A": "C", "C": "G", "G": "T", "T": "A"}


@pytest.fixture(scope="module")
def motif_genome(tmp_path_factory):
    with pysam.FastaFile(str(resources.ECOLI_FASTA)) as fa:
        bases = list(fa.fetch("NC_007779.1", 0, 12_000).upper())
    rng = np.random.default_rng(0)
    starts, p = [], 50
    while p < len(bases) - 100:
        starts.append(p)
        bases[p : p + len(MOTIF)] = MOTIF
        p += int(rng.integers(90, 150))
    seq = "".join(bases)
    path = tmp_path_factory.mktemp("motif") / "motif.fa"
    path.write_text(">m\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    return path, seq, starts


def _train(seq: str, seed: int, directory) -> None:
    torch.manual_seed(seed)
    model = GenossaLM(tiny())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokens = torch.from_numpy(tokenize(seq).astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        idx = torch.randint(0, len(seq) - TRAIN_WINDOW, (BATCH,), generator=g).tolist()
        loss = model.compute_loss(torch.stack([tokens[i : i + TRAIN_WINDOW] for i in idx])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(directory)


@pytest.mark.parametrize("seed", [0, 1])
def test_motif_breaking_snvs_score_lower_than_random_snvs(motif_genome, tmp_path, seed):
    path, seq, starts = motif_genome
    _train(seq, seed, tmp_path / "model")
    rng = np.random.default_rng(100 + seed)
    motif_pos = [s + int(rng.integers(6, 16)) for s in starts[5:45]]
    random_pos: list[int] = []
    while len(random_pos) < 40:
        p = int(rng.integers(300, len(seq) - 300))
        if min(abs(p - s) for s in starts) >= 24 + len(MOTIF) and p not in random_pos:
            random_pos.append(p)
    motif_ids = {f"m{p}" for p in motif_pos}
    rows = [f"m\t{p + 1}\t{'m' if p in motif_pos else 'r'}{p}\t{seq[p]}\t{OTHER[seq[p]]}\t.\t.\t."
            for p in sorted(motif_pos + random_pos)]
    vcf = write_vcf(tmp_path / "v.vcf", {"m": len(seq)}, rows)
    out = tmp_path / "scored.vcf.gz"
    summary = score_variants(tmp_path / "model", path, vcf, out, window=192, downstream=32, methods=["llr"],
                             progress=False, device="cpu")
    assert summary.scored == 80
    with pysam.VariantFile(str(out)) as vf:
        llr = {r.id: r.info["GENOSSA_LLR"][0] for r in vf}
    a = np.array([v for k, v in llr.items() if k in motif_ids])
    b = np.array([v for k, v in llr.items() if k not in motif_ids])
    diff = a.mean() - b.mean()
    auc = (a[:, None] < b[None, :]).mean()
    cohen_d = -diff / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    print(f"seed {seed}: mean difference {diff:.2f} nats, AUC {auc:.3f}, Cohen d {cohen_d:.2f}")
    assert diff <= -2.0, (diff, auc, cohen_d)
    assert auc >= 0.85, (diff, auc, cohen_d)
    assert cohen_d >= 1.5, (diff, auc, cohen_d)
