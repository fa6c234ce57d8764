"""`genossa score`: zero-shot variant-effect scores from a causal model, VCF in, VCF out.

Every ALT allele of every record gets (see the README's "Variant scoring" for the method):

- LLR: ln P(alt window) - ln P(ref window) in nats, summed over the D scored positions from
  the variant's first changed base onward; the ref and alt windows have the same length and
  the same bases before the variant, so the positions before it cancel and indels compare
  with SNVs;
- embedding distances (1 - cosine, L2) between the ref and alt embeddings averaged over the
  same D positions, at each Matryoshka prefix of the model;
- with rc_average, the mean of each score over both strands.

Coordinates: 0-based half-open inside; VCF POS (1-based) only at the file boundary. Alleles
are trimmed of the bases REF and ALT share at their right, then their left end (VCF's padding
base), so `pos` below is the first changed base.

Efficiency: each contig is tiled into windows of `window` bases with step Q; the variants of a
window share one reference pass, streamed (models/streaming.py) and cut at the chunk-aligned
point c <= pos of each variant; the state at c (SSM state, conv inputs, attention cache) is
reused by the reference row and every ALT row of the variants cut there, so each allele costs
only its suffix (pos - c + D bases). The reference passes of several windows run side by side;
rows cut at different points (of one window or of several) share full batches, their states
moved to one position (`shift_state`: the model sees positions only relative to each other).
Inputs go to the GPU from pinned memory and scores come back a few batches late, so the host
never waits for the GPU between batches.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genossa.errors import GenossaError, InputFormatError
from genossa.io.bed import read_bed
from genossa.inference import autocast, for_precision, resolve_precision
from genossa.io.fasta import FastaGenome
from genossa.io.vcf import InfoField, Variant, allele_problem, output_path_ok, read_variants, write_scored_vcf
from genossa.models.hybrid import GenossaLM, ModelState, cat_states, select_state, shift_state, state_rows
from genossa.sequence.alphabet import PAD
from genossa.sequence.tokenize import reverse_complement, tokenize

METHODS = ("llr", "embedding")
MAX_REF_MISMATCH_EXAMPLES = 5


# --- geometry: where a variant's window is and which positions are scored ------------------


@dataclass(frozen=True)
class Geometry:
    """Where one allele is scored on one strand (0-based, strand coordinates)."""

    pos: int
    """First changed base (after trimming)."""
    window_start: int
    """s: start of the window (the model's context starts here)."""
    split: int
    """c: the chunk-aligned point (s <= c <= pos, c - s a multiple of attn_chunk) the suffix starts at."""
    span: int
    """M: positions scored, pos .. pos + M - 1 (D, or fewer at a contig end)."""
    clipped: bool
    """Less than the nominal left context or fewer than D scored positions (contig ends)."""

    @property
    def first_target(self) -> int:
        """The first base is predicted from nothing when the window starts at it: not scored."""
        return max(self.pos, self.window_start + 1)

    @property
    def n_scored(self) -> int:
        return max(0, self.pos + self.span - self.first_target)


def window_step(window: int, downstream: int) -> int:
    """Q: windows start every Q bases; a variant's left context is in [W - D - Q, W - D)."""
    return max(1, (window - downstream) // 2)


def geometry(pos: int, ref_len: int, alt_len: int, contig_length: int, *, window: int, downstream: int,
             chunk: int) -> Geometry:
    """Window, split point and scored span of an allele (trimmed REF [pos, pos+ref_len) -> ALT).

    Windows tile the contig from 0 with step Q = window_step(W, D); the variant takes the
    window in which it has between L = W - D - Q and W - D - 1 bases of left context, so the
    D scored positions end inside it. At the contig start the first window is used (less
    context), at the contig end the span shrinks to what both alleles still have.
    """
    step = window_step(window, downstream)
    min_left = window - downstream - step
    k = max(0, (pos - min_left) // step)
    start = k * step
    span = min(downstream, contig_length - pos, contig_length - pos - ref_len + alt_len)
    split = start + chunk * ((pos - start) // chunk)
    clipped = pos - start < min_left or span < downstream
    return Geometry(pos, start, split, max(span, 0), clipped)


def trim_alleles(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Drop the bases REF and ALT share at the right end, then at the left (moving pos)."""
    while ref and alt and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    lead = 0
    while lead < len(ref) and lead < len(alt) and ref[lead] == alt[lead]:
        lead += 1
    return pos + lead, ref[lead:], alt[lead:]


class StrandView:
    """The genome read on one strand: the reverse strand of a contig of length n maps base i to n - 1 - i."""

    def __init__(self, genome: FastaGenome, reverse: bool):
        self.genome, self.reverse = genome, reverse
        self.lengths = genome.lengths

    def fetch(self, contig: str, start: int, end: int) -> str:
        n = self.lengths[contig]
        start, end = max(0, start), min(n, end)
        if end <= start:
            return ""
        if not self.reverse:
            return self.genome.fetch(contig, start, end).upper()
        return reverse_complement(self.genome.fetch(contig, n - end, n - start).upper())

    def allele(self, contig: str, pos: int, ref: str, alt: str) -> tuple[int, str, str]:
        """(pos, ref, alt) of a forward-strand allele on this strand."""
        if not self.reverse:
            return pos, ref, alt
        n = self.lengths[contig]
        return n - pos - len(ref), reverse_complement(ref), reverse_complement(alt)


# --- one allele's job and its result -----------------------------------------------------


@dataclass
class AlleleJob:
    record: int
    allele: int
    contig: str
    pos: int
    ref: str
    alt: str
    """Trimmed, forward strand."""


@dataclass
class AlleleScore:
    llr: float | None = None
    n: int = 0
    cosine: dict[int, float] = field(default_factory=dict)
    l2: dict[int, float] = field(default_factory=dict)
    clipped: bool = False


@dataclass
class _Row:
    job: int
    geo: Geometry
    tokens: np.ndarray
    """Suffix tokens from the split point: [split, pos + span)."""


def _tokens(seq: str) -> np.ndarray:
    return tokenize(seq, source="scored window")


@dataclass
class _Segment:
    """The rows of one window scored from one split point c: the reference suffix and ALT rows."""

    ref: np.ndarray
    """Reference tokens from c to the end of the rows' longest scored span."""
    rows: list[_Row]
    c: int
    r: int
    """c - window start: the position of the state the rows continue."""
    state: ModelState | None
    """The reference stream's state at c (one row; None at the window start)."""
    prev_logits: Tensor | None
    """[1, V] the last reference logits before c (None at the window start)."""


class _Pending:
    """Scores computed on the GPU and not yet read back: reading them waits for the GPU, so it is
    done a few batches late (every `hold` batches), never between a batch and the next."""

    hold = 16

    def __init__(self, dims: Sequence[int]):
        self.dims = dims
        self.batches, self.results = [], {}

    def add(self, rows: list[_Row], values: dict[str, Tensor]) -> None:
        self.batches.append((rows, values))
        if len(self.batches) >= self.hold:
            self.read()

    def read(self) -> dict[int, AlleleScore]:
        for rows, values in self.batches:
            got = {k: v.double().cpu().tolist() for k, v in values.items()}
            for b, r in enumerate(rows):
                score = AlleleScore(clipped=r.geo.clipped, n=r.geo.n_scored)
                if "llr" in got:
                    score.llr = got["llr"][b]
                for d, cos, l2 in zip(self.dims, got.get("cos", ()), got.get("l2", ())):
                    score.cosine[d] = cos[b]
                    score.l2[d] = l2[b]
                self.results[r.job] = score
        self.batches = []
        return self.results


class AlleleScorer:
    """Scores allele jobs with a causal model (the library behind `score_variants`)."""

    def __init__(self, model: GenossaLM, *, window: int, downstream: int, methods: Sequence[str] = METHODS,
                 batch_size: int = 8, precision: str = "fp32", dims: Sequence[int] | None = None):
        if not model.config.causal:
            raise GenossaError("variant scoring needs a causal (next-base) model; this checkpoint is bidirectional")
        check_window(window, downstream)
        self.model = model
        self.window, self.downstream = window, downstream
        self.methods = tuple(methods)
        self.batch_size = max(2, batch_size)
        self.chunk = model.config.attn_chunk
        self.dims = tuple(dims) if dims else tuple(model.config.mrl_dims)
        self.device = next(model.parameters()).device
        self.precision = precision

    def _forward(self, tokens: Tensor, state: ModelState | None, return_state: bool):
        with autocast(self.device, self.precision):
            return self.model(tokens, state=state, return_state=return_state)

    def _to_device(self, array: np.ndarray) -> Tensor:
        """A host array on the model's device without waiting for the GPU: a copy from pageable
        memory synchronizes the stream first (1 s of a 3.6 s score job idled there), one from
        pinned memory is queued."""
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    @torch.inference_mode()
    def score_strand(self, view: StrandView, jobs: Sequence[AlleleJob], progress=None) -> dict[int, AlleleScore]:
        """{job index: score} of `jobs` (forward-strand alleles) read on `view`'s strand.

        Each window's reference streams from its start through its split points (the windows of
        a pass side by side, ordered by their first split point); the state at every split point
        is kept with that point's rows (a segment), and segments are scored in full batches of
        rows, each row continuing its own segment's state. Segments cut at different points share
        a batch by moving their states to one position (`shift_state`)."""
        windows, unscored = self._windows(view, jobs)
        pending = _Pending(self.dims)
        if progress is not None and unscored:
            progress.update(len(unscored))
        items = []
        for (contig, start), members in windows.items():
            reference, ref_tokens = self._reference(view, contig, start, members)
            by_split: dict[int, list] = defaultdict(list)
            for m in members:
                by_split[m[1].split].append(m)
            points = [(c - start, c, self._rows(view, contig, start, reference, c, group))
                      for c, group in sorted(by_split.items())]
            items.append((ref_tokens, points))
        items.sort(key=lambda item: item[1][0][0])
        # a pass of windows holds about as many tokens as a batch of suffix rows
        per_pass = max(1, min(self.batch_size, self.batch_size * (self.downstream + self.chunk) // self.window))
        queues: dict = defaultdict(list)  # segments waiting for a batch, by the position class they can join
        for p in range(0, len(items), per_pass):
            for segment in self._prefix_pass(items[p : p + per_pass]):
                key = "any" if segment.r and self.model.state_can_shift(segment.r) else segment.r
                queues[key].append(segment)
                self._flush(queues[key], pending, progress, full_only=True)
        for queue in queues.values():
            self._flush(queue, pending, progress, full_only=False)
        results = {i: AlleleScore(clipped=True) for i in unscored}
        results.update(pending.read())
        return results

    def _windows(self, view: StrandView, jobs: Sequence[AlleleJob]):
        """({(contig, window start): [(job index, geometry, ref, alt)]}, indices with nothing to score)."""
        windows: dict[tuple[str, int], list[tuple[int, Geometry, str, str]]] = defaultdict(list)
        unscored = []
        for i, job in enumerate(jobs):
            pos, ref, alt = view.allele(job.contig, job.pos, job.ref, job.alt)
            geo = geometry(pos, len(ref), len(alt), view.lengths[job.contig], window=self.window,
                           downstream=self.downstream, chunk=self.chunk)
            if geo.n_scored == 0:
                unscored.append(i)
            else:
                windows[(job.contig, geo.window_start)].append((i, geo, ref, alt))
        return windows, unscored

    def _prefix_pass(self, items):
        """Yields the segments of the windows in `items` ((reference tokens, [(r, c, rows)]) each),
        each with the reference state at its split point, in order of r."""
        longest = max(points[-1][0] for _, points in items)
        prefixes = np.full((len(items), longest), PAD, dtype=np.int64)
        for j, (ref_tokens, points) in enumerate(items):
            prefixes[j, : points[-1][0]] = ref_tokens[: points[-1][0]]
        at_point = defaultdict(list)  # r -> [(window, c, rows)]
        for j, (_, points) in enumerate(items):
            for r, c, rows in points:
                at_point[r].append((j, c, rows))
        alive = list(range(len(items)))  # the windows whose streams are the state's rows, in order
        last = [points[-1][0] for _, points in items]
        state, prev_logits, at = None, None, 0
        for r in sorted(at_point):
            if r > at:
                out = self._forward(self._to_device(prefixes[alive, at:r]), state, True)
                state, prev_logits, at = out.state, out.logits[:, -1].float(), r
            row_of = {j: k for k, j in enumerate(alive)}
            here = at_point[r]
            taken = taken_logits = None
            if state is not None:  # one copy of the rows cut here; each segment holds a view of its row
                index = self._to_device(np.array([row_of[j] for j, _, _ in here]))
                taken, taken_logits = select_state(state, index), prev_logits.index_select(0, index)
            for n, (j, c, rows) in enumerate(here):
                # the rows of one point in batches of at most batch_size - 1 ALT rows (+ the reference row,
                # as long as their longest scored span: the window's reference may reach much further)
                for b in range(0, len(rows), self.batch_size - 1):
                    part = rows[b : b + self.batch_size - 1]
                    ref = items[j][0][r : r + max(row.geo.pos + row.geo.span - c for row in part)]
                    yield _Segment(ref, part, c, r,
                                   state_rows(taken, n, 1) if taken is not None else None,
                                   taken_logits[n : n + 1] if taken is not None else None)
            stay = [k for k, j in enumerate(alive) if last[j] > r]
            if len(stay) < len(alive) and stay and state is not None:
                index = self._to_device(np.array(stay))
                state, prev_logits = select_state(state, index), prev_logits.index_select(0, index)
            alive = [alive[k] for k in stay]

    def _flush(self, queue: list[_Segment], pending: _Pending, progress, *, full_only: bool) -> None:
        """Scores the queued segments in batches of at most batch_size rows (only full batches
        with full_only). Their states move to the latest position among them."""
        while queue:
            n_rows, take = 0, 0
            while take < len(queue) and n_rows + 1 + len(queue[take].rows) <= self.batch_size:
                n_rows += 1 + len(queue[take].rows)
                take += 1
            if full_only and take == len(queue):
                return
            batch, queue[:] = queue[:take], queue[take:]
            state = prev_logits = None
            if batch[0].state is not None:
                r = max(seg.r for seg in batch)
                state = cat_states([shift_state(seg.state, r) for seg in batch])
                prev_logits = torch.cat([seg.prev_logits for seg in batch])
            pending.add([row for seg in batch for row in seg.rows], self._score_rows(batch, state, prev_logits))
            if progress is not None:
                progress.update(sum(len(seg.rows) for seg in batch))

    @staticmethod
    def _reference(view: StrandView, contig: str, start: int, members) -> tuple[str, np.ndarray]:
        """The window's reference from its start to the end of its last scored span, and its tokens."""
        end = max(geo.pos + geo.span for _, geo, _, _ in members)
        reference = view.fetch(contig, start, end)
        return reference, _tokens(reference).astype(np.int64)

    @staticmethod
    def _rows(view: StrandView, contig: str, start: int, reference: str, c: int, group) -> list[_Row]:
        """ALT rows from split point c: the reference up to each variant, the ALT, what follows."""
        rows = []
        for i, geo, ref, alt in group:
            before = reference[c - start : geo.pos - start]
            after = view.fetch(contig, geo.pos + len(ref), geo.pos + len(ref) + geo.span)
            rows.append(_Row(i, geo, _tokens((before + alt + after)[: geo.pos - c + geo.span])))
        return rows

    def _score_rows(self, segments: list[_Segment], state, prev_logits) -> dict[str, Tensor]:
        """One batch: each segment's reference row, then its ALT rows, all from their own split
        point; state and prev_logits (the last reference logits before the split) have one row per
        segment (or are None: every segment starts at its window's start). Returns the scores of
        the ALT rows in order, on the device: llr [n], and per Matryoshka prefix cos, l2 [dims, n]."""
        owner, ref_of, alt_idx, offsets, rows, x_rows = [], [], [], [], [], []
        for j, seg in enumerate(segments):
            ref_at = len(x_rows)
            x_rows.append(seg.ref)
            ref_of.append(ref_at)
            owner.append(j)
            for r in seg.rows:
                alt_idx.append(len(x_rows))
                x_rows.append(r.tokens)
                ref_of.append(ref_at)
                owner.append(j)
                offsets.append(seg.c)
                rows.append(r)
        B, length = len(x_rows), max(len(t) for t in x_rows)
        x = np.full((B, length), PAD, dtype=np.int64)
        for b, t in enumerate(x_rows):
            x[b, : len(t)] = t
        offsets = np.array(offsets)
        # per ALT row: first scored target, end of the span, first embedded position (from its c)
        bounds = np.stack([np.array([r.geo.first_target for r in rows]) - offsets,
                           np.array([r.geo.pos + r.geo.span for r in rows]) - offsets,
                           np.array([r.geo.pos for r in rows]) - offsets])
        alt_idx, ref_of, owner = np.array(alt_idx), np.array(ref_of), np.array(owner)
        tokens, bounds = self._to_device(x), self._to_device(bounds)
        alt_t, ref_alt = self._to_device(alt_idx), self._to_device(ref_of[alt_idx])
        owner_t = self._to_device(owner) if state is not None else None
        out = self._forward(tokens, select_state(state, owner_t) if state is not None else None, False)
        u = torch.arange(length, device=self.device)[None]
        lo, hi, elo = bounds[0, :, None], bounds[1, :, None], bounds[2, :, None]
        values = {}
        if "llr" in self.methods:
            # target u (base c + u) is predicted at u - 1; u = 0 from the last reference logit before c
            logits = out.logits.float()
            first = (prev_logits.index_select(0, owner_t)[:, None] if prev_logits is not None
                     else logits.new_zeros(B, 1, logits.shape[-1]))  # c is the window start: target 0 never scored
            aligned = torch.cat([first, logits[:, :-1]], 1)
            logp = torch.log_softmax(aligned, -1).gather(-1, tokens.clamp_max(aligned.shape[-1] - 1)[..., None])[..., 0]
            mask = (u >= lo) & (u < hi)
            values["llr"] = ((logp[alt_t] - logp[ref_alt]) * mask).sum(1)
        if "embedding" in self.methods:
            emb = out.embeddings.float()
            w = ((u >= elo) & (u < hi)).float()
            w = w / w.sum(1, keepdim=True).clamp_min(1)
            if len(segments) == 1:  # rows 1.. are the ALTs of row 0: no gathered copies
                alt_mean, ref_mean = torch.einsum("bl,bld->bd", w, emb[1:]), w @ emb[0]
            else:
                alt_mean, ref_mean = (torch.einsum("bl,bld->bd", w, emb[i]) for i in (alt_t, ref_alt))
            cos, l2 = [], []
            for d in self.dims:
                a, r_ = alt_mean[:, :d], ref_mean[:, :d]
                cos.append(1 - torch.nn.functional.cosine_similarity(a, r_, dim=-1))
                l2.append((a - r_).norm(dim=-1))
            values.update(cos=torch.stack(cos), l2=torch.stack(l2))
        return values


def check_window(window: int, downstream: int) -> None:
    if downstream < 1:
        raise GenossaError(f"--downstream must be >= 1, got {downstream}")
    if window < downstream + 2:
        raise GenossaError(f"--window ({window}) must exceed --downstream ({downstream}) by at least 2 bases of context")


@torch.inference_mode()
def score_allele_naive(model: GenossaLM, view: StrandView, job: AlleleJob, *, window: int, downstream: int,
                       dims: Sequence[int] | None = None) -> AlleleScore:
    """The same scores as AlleleScorer, from two full windows computed from scratch (no state
    reuse, no batching, no padding): the reference for tests of the fast path."""
    pos, ref, alt = view.allele(job.contig, job.pos, job.ref, job.alt)
    n = view.lengths[job.contig]
    geo = geometry(pos, len(ref), len(alt), n, window=window, downstream=downstream, chunk=model.config.attn_chunk)
    if geo.n_scored == 0:
        return AlleleScore(clipped=True)
    s, end = geo.window_start, geo.pos + geo.span
    ref_seq = view.fetch(job.contig, s, end)
    alt_seq = (view.fetch(job.contig, s, pos) + alt + view.fetch(job.contig, pos + len(ref), pos + len(ref) + geo.span))
    alt_seq = alt_seq[: end - s]
    result = AlleleScore(clipped=geo.clipped, n=geo.n_scored)
    logps, embs = [], []
    for seq in (ref_seq, alt_seq):
        tokens = torch.from_numpy(_tokens(seq).astype(np.int64))[None].to(next(model.parameters()).device)
        out = model(tokens)
        logp = torch.log_softmax(out.logits[0, :-1].float(), -1).gather(-1, tokens[0, 1:, None])[:, 0]
        logps.append(logp[geo.first_target - s - 1 : end - s - 1].double().sum())
        embs.append(out.embeddings[0, pos - s : end - s].float().mean(0))
    result.llr = float(logps[1] - logps[0])
    for d in dims or model.config.mrl_dims:
        a, r = embs[1][:d], embs[0][:d]
        result.cosine[d] = float(1 - torch.nn.functional.cosine_similarity(a, r, dim=0))
        result.l2[d] = float((a - r).norm())
    return result


# --- the job ----------------------------------------------------------------------------


@dataclass
class ScoreSummary:
    """What `score_variants` did."""

    out: Path
    table: Path | None
    records: int
    alleles: int
    scored: int
    skipped: dict[str, int]
    """{reason: ALT alleles not scored}: symbolic, breakend, spanning_deletion, missing,
    not_acgtn, ref_not_acgtn, ref_mismatch, outside_regions, no_downstream."""
    ref_mismatches: int
    ref_mismatch_examples: list[str]
    clipped: int
    """Scored alleles whose window was clipped at a contig end."""
    seconds: float
    identity: dict = field(default_factory=dict)

    @property
    def variants_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else math.inf

    def format(self) -> str:
        lines = [
            f"scored {self.scored:,} of {self.alleles:,} ALT alleles in {self.records:,} records "
            f"in {self.seconds:.1f} s ({self.variants_per_s:,.1f} variants/s); {self.clipped:,} clipped at contig ends",
        ]
        if self.skipped:
            lines.append("not scored: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped.items())))
        if self.ref_mismatches:
            lines.append(f"REF does not match the reference in {self.ref_mismatches:,} records, e.g. "
                         + "; ".join(self.ref_mismatch_examples))
        lines.append(f"scored VCF: {self.out}" + (f"; table: {self.table}" if self.table else ""))
        return "\n".join(lines)


def info_fields(methods: Sequence[str], dims: Sequence[int], rc_average: bool) -> list[InfoField]:
    strands = " (mean of both strands)" if rc_average else ""
    fields = []
    if "llr" in methods:
        fields.append(InfoField("GENOSSA_LLR", "A", "Float",
                                "genossa log-likelihood ratio ln P(alt)-ln P(ref) in nats over the positions from the "
                                f"variant onward, equal-length windows{strands}; negative = less likely than the reference"))
    fields.append(InfoField("GENOSSA_N", "A", "Integer", "genossa: positions summed in GENOSSA_LLR and averaged for "
                            "the embedding distances (forward strand)"))
    if "embedding" in methods:
        for d in dims:
            fields.append(InfoField(f"GENOSSA_COS{d}", "A", "Float", f"genossa cosine distance (1 - cos) of the mean "
                                    f"ref and alt embeddings over the scored positions, Matryoshka prefix {d}{strands}"))
            fields.append(InfoField(f"GENOSSA_L2_{d}", "A", "Float", f"genossa L2 distance of the mean ref and alt "
                                    f"embeddings over the scored positions, Matryoshka prefix {d}{strands}"))
    fields += [
        InfoField("GENOSSA_CLIPPED", "0", "Flag", "genossa: a window was clipped at a contig end (less context or "
                  "fewer scored positions)"),
        InfoField("GENOSSA_REF_MISMATCH", "0", "Flag", "genossa: REF differs from the reference FASTA; not scored"),
        InfoField("GENOSSA_SKIPPED", "A", "String", "genossa: why an ALT was not scored (symbolic, breakend, "
                  "spanning_deletion, missing, not_acgtn, ref_not_acgtn, ref_mismatch, no_downstream), '.' if scored"),
    ]
    return fields


def _in_regions(variant: Variant, regions) -> bool:
    end = variant.start + max(1, len(variant.ref))
    return any(iv.start < end and variant.start < iv.end for iv in regions.get(variant.contig, ()))


def _check_sorted(variants: Sequence[Variant], vcf: Path) -> None:
    seen: dict[str, int] = {}
    last_contig, last_pos = None, 0
    for v in variants:
        if v.contig != last_contig:
            if v.contig in seen:
                raise InputFormatError(f"{v.where(vcf)}: records of {v.contig!r} are not together; sort the VCF "
                                       f"(bcftools sort) so that the scored VCF can be indexed")
            seen[v.contig] = 1
            last_contig, last_pos = v.contig, 0
        if v.pos < last_pos:
            raise InputFormatError(f"{v.where(vcf)}: POS {v.pos} comes after {last_pos}; sort the VCF (bcftools sort) "
                                   f"so that the scored VCF can be indexed")
        last_pos = v.pos


def score_variants(
    checkpoint: str | Path,
    fasta: str | Path | Sequence[str | Path],
    vcf: str | Path,
    out: str | Path,
    *,
    window: int = 8192,
    downstream: int = 1024,
    regions: str | Path | None = None,
    methods: Sequence[str] = METHODS,
    rc_average: bool = False,
    table: str | Path | None = None,
    strict: bool = False,
    batch_size: int = 8,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
) -> ScoreSummary:
    """Score every ALT allele of `vcf` against `fasta` with the model in `checkpoint`; write the
    input with the scores as INFO fields to `out` (bgzip + .tbi) and, optionally, a TSV `table`.

    REF is checked against the reference: a mismatching record is flagged (GENOSSA_REF_MISMATCH)
    and not scored, or, with strict, is an error. Symbolic and other unscorable ALTs get a
    GENOSSA_SKIPPED reason. With `regions` (BED), records outside them are copied unscored.
    """
    from genossa.inference import load_model

    t0 = time.perf_counter()
    methods = tuple(dict.fromkeys(methods))
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise GenossaError(f"--methods: unknown {sorted(unknown)}; choose from {', '.join(METHODS)}")
    check_window(window, downstream)
    if batch_size < 1:
        raise GenossaError(f"--batch-size must be >= 1, got {batch_size}")
    vcf, out = Path(vcf), output_path_ok(out)
    table = Path(table) if table else None
    genome = FastaGenome([fasta] if isinstance(fasta, (str, Path)) else list(fasta))
    lengths = genome.lengths
    variants = read_variants(vcf, lengths)
    _check_sorted(variants, vcf)
    region_map = None
    if regions:
        region_map = defaultdict(list)
        for iv in read_bed(regions, lengths):
            region_map[iv.contig].append(iv)

    # the inputs are checked before the model is loaded, so that their errors come quickly
    loaded = load_model(checkpoint, device)
    model = loaded.model
    precision = resolve_precision(precision, loaded.device)
    model = for_precision(model, precision)
    forward = StrandView(genome, reverse=False)
    skipped: dict[int, dict[int, str]] = defaultdict(dict)
    mismatched: set[int] = set()
    outside: set[int] = set()
    examples: list[str] = []
    jobs: list[AlleleJob] = []
    for v in variants:
        if region_map is not None and not _in_regions(v, region_map):
            outside.add(v.index)
            continue
        if v.ref and allele_problem("A", v.ref) is None:
            stop = v.start + len(v.ref)
            seen = forward.fetch(v.contig, v.start, stop)
            if seen != v.ref:
                why = "past the contig end" if stop > lengths[v.contig] else f"reference has {seen[:20]!r}"
                message = f"{v.contig}:{v.pos} REF {v.ref[:20]!r} ({why})"
                if strict:
                    raise InputFormatError(f"{v.where(vcf)}: REF {v.ref[:20]!r} does not match the reference "
                                           f"({why}); drop --strict to flag such records instead")
                mismatched.add(v.index)
                if len(examples) < MAX_REF_MISMATCH_EXAMPLES:
                    examples.append(message)
        for a, alt in enumerate(v.alts):
            problem = allele_problem(v.ref, alt)
            if problem is None and v.index in mismatched:
                problem = "ref_mismatch"
            if problem is not None:
                skipped[v.index][a] = problem
                continue
            jobs.append(AlleleJob(v.index, a, v.contig, *trim_alleles(v.start, v.ref, alt)))

    scorer = AlleleScorer(model, window=window, downstream=downstream, methods=methods, batch_size=batch_size,
                          precision=precision)
    views = [forward] + ([StrandView(genome, reverse=True)] if rc_average else [])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs) * len(views), unit="variant", desc="genossa score", dynamic_ncols=True,
                   leave=False, mininterval=0.5)
    try:
        per_strand = [scorer.score_strand(view, jobs, bar) for view in views]
    finally:
        if bar is not None:
            bar.close()

    results: dict[tuple[int, int], AlleleScore] = {}
    for i, job in enumerate(jobs):
        strands = [s[i] for s in per_strand]
        # a strand on which nothing is left to score (a deletion of a contig's last bases) is left out
        valid = [s for s in strands if s.n > 0]
        if not valid:
            skipped[job.record][job.allele] = "no_downstream"
            continue
        merged = AlleleScore(n=strands[0].n, clipped=any(s.clipped for s in strands))
        if "llr" in methods:
            merged.llr = float(np.mean([s.llr for s in valid]))
        if "embedding" in methods:
            merged.cosine = {d: float(np.mean([s.cosine[d] for s in valid])) for d in valid[0].cosine}
            merged.l2 = {d: float(np.mean([s.l2[d] for s in valid])) for d in valid[0].l2}
        results[(job.record, job.allele)] = merged

    dims = scorer.dims
    fields = info_fields(methods, dims, rc_average)
    field_ids = [f.id for f in fields]
    by_index = {v.index: v for v in variants}

    def values(index: int) -> dict:
        v = by_index[index]
        blank = dict.fromkeys(field_ids)
        if index in outside:
            return blank
        n_alt = len(v.alts)
        got = [results.get((index, a)) for a in range(n_alt)]
        vals = blank
        if any(g is not None for g in got):
            if "llr" in methods:
                vals["GENOSSA_LLR"] = tuple(g.llr if g else None for g in got)
            vals["GENOSSA_N"] = tuple(g.n if g else None for g in got)
            if "embedding" in methods:
                for d in dims:
                    vals[f"GENOSSA_COS{d}"] = tuple(g.cosine.get(d) if g else None for g in got)
                    vals[f"GENOSSA_L2_{d}"] = tuple(g.l2.get(d) if g else None for g in got)
        if any(g is not None and g.clipped for g in got):
            vals["GENOSSA_CLIPPED"] = True
        if index in mismatched:
            vals["GENOSSA_REF_MISMATCH"] = True
        if skipped.get(index):
            vals["GENOSSA_SKIPPED"] = tuple(skipped[index].get(a, ".") for a in range(n_alt))
        return vals

    identity = loaded.identity
    provenance = (f"##genossa_score=<Checkpoint=\"{identity['checkpoint']}\",Weights_sha256={identity['weights_sha256']},"
                  f"Window={window},Downstream={downstream},Methods={'|'.join(methods)},RC_average={rc_average},"
                  f"Precision={precision}>")
    write_scored_vcf(vcf, out, fields, values, [provenance])
    if table is not None:
        _write_table(table, variants, results, skipped, mismatched, outside, methods, dims)

    skip_counts: dict[str, int] = defaultdict(int)
    for reasons in skipped.values():
        for reason in reasons.values():
            skip_counts[reason] += 1
    n_outside = sum(len(by_index[i].alts) for i in outside)
    if n_outside:
        skip_counts["outside_regions"] = n_outside
    return ScoreSummary(
        out=out, table=table, records=len(variants), alleles=sum(len(v.alts) for v in variants),
        scored=len(results), skipped=dict(skip_counts), ref_mismatches=len(mismatched),
        ref_mismatch_examples=examples, clipped=sum(r.clipped for r in results.values()),
        seconds=time.perf_counter() - t0, identity=identity,
    )


def _fmt(x) -> str:
    if x is None:
        return "."
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _write_table(path: Path, variants, results, skipped, mismatched, outside, methods, dims) -> None:
    """One row per ALT allele of each record, in VCF order (tab-separated, '.' = missing)."""
    cols = ["chrom", "pos", "id", "ref", "alt", "status", "n"]
    if "llr" in methods:
        cols.append("llr")
    if "embedding" in methods:
        cols += [f"cos{d}" for d in dims] + [f"l2_{d}" for d in dims]
    cols += ["clipped", "ref_mismatch"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write("\t".join(cols) + "\n")
        for v in variants:
            for a, alt in enumerate(v.alts):
                r = results.get((v.index, a))
                status = "outside_regions" if v.index in outside else skipped.get(v.index, {}).get(a, "scored")
                row = [v.contig, v.pos, v.id, v.ref, alt, status, r.n if r else None]
                if "llr" in methods:
                    row.append(r.llr if r else None)
                if "embedding" in methods:
                    row += [r.cosine.get(d) if r else None for d in dims] + [r.l2.get(d) if r else None for d in dims]
                row += [bool(r and r.clipped), v.index in mismatched]
                fh.write("\t".join(_fmt(x) for x in row) + "\n")
    tmp.replace(path)
