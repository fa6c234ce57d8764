"""Held-out bits per base of a causal checkpoint on a FASTA genome (`genossa eval bpb`).

The genome (whole records, or the merged intervals of a BED) is tiled into adjacent windows
of `window` bases (the tail of an interval is one shorter window). Each window is read on
its own: the model predicts base t+1 from bases 0..t of the window, so a window's first
base is context only. Targets are the A, C, G, T bases; N (and padding) are read as input
but never scored. Bits per base = sum of -log2 p(target) / number of targets, pooled over
windows (a long window weighs more than a short one).

With `rc_average`, every window is also read on the reverse strand (its reverse complement)
and the reported value is the mean of the two strands' bits per base, so a sequence and its
reverse complement get the same value when they are tiled into the same windows (e.g. a
record shorter than the window).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from genossa.data.windows import encode_window, plan_windows
from genossa.errors import GenossaError
from genossa.inference import autocast, load_model, resolve_precision
from genossa.io.bed import read_bed
from genossa.io.fasta import FastaGenome
from genossa.models.hybrid import GenossaLM
from genossa.models.losses import align_targets
from genossa.models.rc import reverse_complement_padded
from genossa.sequence import alphabet
from genossa.sequence.intervals import Interval, merge


@dataclass
class StrandBits:
    """Summed bits and number of scored targets (A C G T) of one strand."""

    bits: float = 0.0
    targets: int = 0

    @property
    def bits_per_base(self) -> float:
        return self.bits / self.targets if self.targets else math.nan


@dataclass
class ContigBits:
    contig: str
    windows: int = 0
    forward: StrandBits = field(default_factory=StrandBits)
    reverse: StrandBits | None = None

    @property
    def bits_per_base(self) -> float:
        if self.reverse is None:
            return self.forward.bits_per_base
        return (self.forward.bits_per_base + self.reverse.bits_per_base) / 2


@dataclass
class BpbResult:
    """Bits per base per contig and in total (`total.contig` is 'total')."""

    rows: list[ContigBits]
    total: ContigBits
    window: int
    rc_average: bool
    checkpoint: str
    seconds: float

    @property
    def bits_per_base(self) -> float:
        return self.total.bits_per_base

    def format(self) -> str:
        strands = "mean of both strands" if self.rc_average else "forward strand"
        lines = [f"bits per base of {self.checkpoint} ({self.window:,}-base windows, {strands})",
                 f"{'contig':<32}  {'windows':>8}  {'targets':>12}  {'bits/base':>9}"
                 + (f"  {'forward':>9}  {'reverse':>9}" if self.rc_average else "")]
        for r in [*self.rows, self.total]:
            line = f"{r.contig:<32}  {r.windows:>8,}  {r.forward.targets:>12,}  {r.bits_per_base:>9.4f}"
            if r.reverse is not None:
                line += f"  {r.forward.bits_per_base:>9.4f}  {r.reverse.bits_per_base:>9.4f}"
            lines.append(line)
        lines.append(f"{self.total.forward.targets:,} bases scored in {self.seconds:.1f} s")
        return "\n".join(lines)


@torch.no_grad()
def window_bits(model: GenossaLM, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens [B, T] (right-padded with PAD) -> (bits [B], targets [B]): summed -log2 p of the
    next base over targets that are A, C, G or T, and how many there are (fp32)."""
    logits = model(tokens).logits
    logits, targets, w = align_targets(logits, tokens, causal=True)  # [B, T-1, V], [B, T-1]
    scored = (targets < alphabet.N) & (w > 0)
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # [B, T-1]
    return (nll * scored).sum(1) / math.log(2), scored.sum(1)


def _intervals(genome: FastaGenome, regions: str | Path | None) -> list[Interval]:
    lengths = genome.lengths
    if regions:
        return merge(read_bed(regions, lengths))
    return [Interval(name, 0, n) for name, n in lengths.items()]


def evaluate_bpb(
    checkpoint: str | Path,
    fasta: Sequence[str | Path],
    *,
    regions: str | Path | None = None,
    window: int = 8192,
    rc_average: bool = False,
    max_windows: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    precision: str = "auto",
) -> BpbResult:
    """Bits per base of the causal model in `checkpoint` on `fasta` (see the module docstring).

    max_windows: score only this many windows, evenly spaced over the plan (deterministic).
    precision: "fp32", "bf16" (CUDA only) or "auto" (bf16 on CUDA, fp32 on the CPU).
    """
    if window < 2:
        raise GenossaError(f"--window must be at least 2 bases (one of context, one scored), got {window}")
    if max_windows is not None and max_windows < 1:
        raise GenossaError(f"--max-windows must be at least 1, got {max_windows}")
    t0 = time.perf_counter()
    loaded = load_model(checkpoint, device)
    model = loaded.model
    if not model.config.causal:
        raise GenossaError(f"{checkpoint}: bits per base needs a causal (next-base) model; this one is bidirectional")
    precision = resolve_precision(precision, loaded.device)

    genome = FastaGenome(list(fasta))
    for i, path in enumerate(genome.paths):
        if not genome.indexed(i):
            raise GenossaError(f"{path}: plain gzip cannot be read by region; compress it with bgzip instead")
    plan = plan_windows(_intervals(genome, regions), list(genome.lengths), window, window, "pad")
    order = np.arange(len(plan))
    if max_windows is not None and max_windows < len(plan):
        order = np.unique(np.linspace(0, len(plan) - 1, max_windows).round().astype(np.int64))
    if order.size == 0:
        raise GenossaError("no window to score (empty regions?)")

    rows: dict[str, ContigBits] = {}
    total = ContigBits("total", reverse=StrandBits() if rc_average else None)
    strands = [False, True] if rc_average else [False]
    for lo in range(0, order.size, batch_size):
        idx = order[lo:lo + batch_size]
        batch = torch.full((idx.size, window), alphabet.PAD, dtype=torch.int64)
        names = []
        for row, i in enumerate(idx.tolist()):
            name = plan.contigs[plan.contig[i]]
            start, end = int(plan.start[i]), int(plan.end[i])
            raw = np.frombuffer(genome.fetch(name, start, end).encode("ascii"), dtype=np.uint8)
            file = str(genome.paths[genome.contigs[name].file])
            tokens, _ = encode_window(raw, file=file, record=name, offset=start)
            batch[row, :tokens.size] = torch.from_numpy(tokens.astype(np.int64))
            names.append(name)
        batch = batch.to(loaded.device)
        for reverse in strands:
            tokens = reverse_complement_padded(batch) if reverse else batch
            with autocast(loaded.device, precision):
                bits, targets = window_bits(model, tokens)
            for name, b, n in zip(names, bits.tolist(), targets.tolist()):
                r = rows.setdefault(name, ContigBits(name, reverse=StrandBits() if rc_average else None))
                for acc in (r, total):
                    strand = acc.reverse if reverse else acc.forward
                    strand.bits += b
                    strand.targets += n
        for name in names:
            rows[name].windows += 1
            total.windows += 1
    return BpbResult(list(rows.values()), total, window, rc_average, str(checkpoint), time.perf_counter() - t0)
