"""The scoring method: ALT == REF scores 0, and the prefix-reuse fast path (shared reference
stream, state at the split point, batched padded suffixes) equals scoring each allele's full
ref and alt windows from scratch."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from kernel_helpers import gpu

from genossa.io.fasta import FastaGenome
from genossa.models.hybrid import GenossaLM
from genossa.score import AlleleJob, AlleleScorer, StrandView, geometry, score_allele_naive, trim_alleles, window_step

from score_helpers import DOWNSTREAM, WINDOW


def _genome(tmp_path, lengths=(700, 150)) -> FastaGenome:
    rng = np.random.default_rng(7)
    records = {f"c{i}": "".join(rng.choice(list("ACGT"), n)) for i, n in enumerate(lengths)}
    path = tmp_path / "g.fa"
    path.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
    return FastaGenome([path])


def _jobs(genome: FastaGenome) -> list[AlleleJob]:
    """SNVs, MNVs, insertions (one longer than D), deletions (one longer than D), several in one
    window and at one position (multi-allelic), both contig ends, and ALT == REF."""
    seq = {c: genome.fetch(c, 0, n) for c, n in genome.lengths.items()}
    other = {"A": "C", "C": "G", "G": "T", "T": "A"}
    specs = [
        ("c0", 100, 1, "snv"), ("c0", 101, 1, "snv"), ("c0", 115, 1, "snv"), ("c0", 130, 3, "mnv"),
        ("c0", 140, 1, "ins:GATTACA"), ("c0", 150, 1, "ins:" + "ACGT" * 10), ("c0", 160, 6, "del"),
        ("c0", 170, 40, "del"), ("c0", 200, 1, "snv"), ("c0", 200, 1, "ins:TT"), ("c0", 200, 2, "del"),
        ("c0", 330, 1, "same"), ("c0", 0, 1, "snv"), ("c0", 3, 1, "snv"), ("c0", 699, 1, "snv"),
        ("c0", 690, 3, "del"), ("c0", 697, 3, "del"), ("c1", 10, 1, "snv"), ("c1", 148, 2, "del"),
        ("c1", 75, 1, "ins:CC"), ("c0", 420, 1, "same_ins"),
    ]
    jobs = []
    for i, (contig, pos, n, kind) in enumerate(specs):
        ref = seq[contig][pos : pos + n]
        if kind in ("snv", "mnv"):
            alt = "".join(other[b] for b in ref)
        elif kind.startswith("ins:"):
            alt = ref + kind[4:]
        elif kind == "del":
            alt = ref[0]
        elif kind == "same":
            alt = ref
        else:  # an insertion written with a longer REF that is the same sequence
            ref, alt = seq[contig][pos : pos + 4], seq[contig][pos : pos + 4]
        jobs.append(AlleleJob(i, 0, contig, *trim_alleles(pos, ref, alt)))
    return jobs


def test_trim_alleles():
    assert trim_alleles(10, "G", "GA") == (11, "", "A")
    assert trim_alleles(10, "CTT", "C") == (11, "TT", "")
    assert trim_alleles(10, "ATC", "GTC") == (10, "A", "G")
    assert trim_alleles(10, "A", "A") == (10, "", "")


@pytest.mark.parametrize("pos", [0, 5, 40, 71, 72, 500, 1000])
def test_geometry_puts_the_scored_span_inside_the_window(pos):
    W, D, chunk, n = 96, 24, 16, 1100
    g = geometry(pos, 1, 1, n, window=W, downstream=D, chunk=chunk)
    step = window_step(W, D)
    assert g.window_start % step == 0 and g.window_start <= g.split <= g.pos
    assert (g.split - g.window_start) % chunk == 0 and g.pos - g.split < chunk
    assert g.pos + g.span <= g.window_start + W
    assert g.clipped == (pos < W - D - step)
    if not g.clipped:
        assert W - D - step <= g.pos - g.window_start < W - D


def test_geometry_equal_lengths_at_the_contig_end():
    # a deletion of the last 2 bases leaves the alt nothing after the variant
    assert geometry(98, 2, 0, 100, window=96, downstream=24, chunk=16).n_scored == 0
    g = geometry(90, 3, 1, 100, window=96, downstream=24, chunk=16)
    assert g.span == 100 - 90 - 3 + 1 and g.clipped


@pytest.mark.parametrize("reverse, batch_size", [(False, 4), (True, 4), (False, 64)])
def test_fast_path_equals_full_windows_from_scratch(tmp_path, tiny_model, reverse, batch_size):
    """Batches hold the rows of several split points (their states moved to one position, or at
    one position near a contig start); batch 4 also cuts one point's rows into several batches."""
    _check_fast_path(_genome(tmp_path), tiny_model, tiny_model, reverse, batch_size)


@pytest.mark.gpu
@gpu
def test_gpu_fast_path_on_the_kernels_equals_full_windows(tmp_path, tiny_model):
    """The same on a GPU: the fast path on the Triton kernels (pooled keys read by index, states
    moved by shift_state) against full windows on the PyTorch references, fp32."""
    fast = GenossaLM(replace(tiny_model.config, kernels="triton")).cuda().eval()
    fast.load_state_dict(tiny_model.state_dict())
    reference = GenossaLM(replace(tiny_model.config, kernels="naive")).cuda().eval()
    reference.load_state_dict(tiny_model.state_dict())
    _check_fast_path(_genome(tmp_path), fast, reference, False, 64)


def _check_fast_path(genome: FastaGenome, model: GenossaLM, reference: GenossaLM, reverse: bool, batch_size: int):
    jobs = _jobs(genome)
    view = StrandView(genome, reverse=reverse)
    scorer = AlleleScorer(model, window=WINDOW, downstream=DOWNSTREAM, batch_size=batch_size)
    cuts = _record_batches(scorer)
    fast = scorer.score_strand(view, jobs)
    if batch_size == 64:
        assert max(len(set(c)) for c in cuts) > 1  # a batch of several split points
    compared = 0
    for i, job in enumerate(jobs):
        slow = score_allele_naive(reference, view, job, window=WINDOW, downstream=DOWNSTREAM)
        assert fast[i].n == slow.n and fast[i].clipped == slow.clipped, job
        if slow.n == 0:
            assert fast[i].llr is None
            continue
        compared += 1
        assert fast[i].llr == pytest.approx(slow.llr, rel=1e-4, abs=1e-4), job
        for d in model.config.mrl_dims:
            assert fast[i].cosine[d] == pytest.approx(slow.cosine[d], rel=1e-3, abs=1e-6), (job, d)
            assert fast[i].l2[d] == pytest.approx(slow.l2[d], rel=1e-4, abs=1e-5), (job, d)
    assert compared >= len(jobs) - 2
    # the bundle has scores of both signs and clearly non-zero values: the comparison has teeth
    llrs = [fast[i].llr for i in fast if fast[i].llr is not None]
    assert max(abs(x) for x in llrs) > 0.05


def _record_batches(scorer: AlleleScorer) -> list[list[int]]:
    """The split points of each batch of suffix rows the scorer runs (filled as it scores)."""
    cuts = []
    score_rows = scorer._score_rows

    def recording(segments, state, prev_logits):
        cuts.append([seg.c for seg in segments])
        return score_rows(segments, state, prev_logits)

    scorer._score_rows = recording
    return cuts


def test_sparse_variants_share_prefix_passes_across_windows(tmp_path, tiny_model):
    """One SNV per window, at different offsets (a sparse VCF): the windows' reference prefixes
    run as one batch that windows leave at their own split points, their suffix rows share
    batches, and the scores equal the full windows' from scratch."""
    genome = _genome(tmp_path, lengths=(2000,))
    seq = genome.fetch("c0", 0, 2000)
    other = {"A": "C", "C": "G", "G": "T", "T": "A"}
    positions = [90 + 36 * k + (7 * k) % 30 for k in range(0, 50, 2)]  # every other window, offsets vary
    jobs = [AlleleJob(i, 0, "c0", p, seq[p], other[seq[p]]) for i, p in enumerate(positions)]
    scorer = AlleleScorer(tiny_model, window=WINDOW, downstream=DOWNSTREAM, batch_size=64)
    prefix_rows = []
    forward = scorer._forward

    def recording(tokens, state, return_state):
        if return_state:
            prefix_rows.append(tokens.shape[0])
        return forward(tokens, state, return_state)

    scorer._forward = recording
    cuts = _record_batches(scorer)
    fast = scorer.score_strand(StrandView(genome, reverse=False), jobs)
    assert len(cuts) < len(jobs) / 4  # several windows' rows per batch
    geos = [geometry(p, 1, 1, 2000, window=WINDOW, downstream=DOWNSTREAM, chunk=16) for p in positions]
    assert len({g.split - g.window_start for g in geos}) > 1  # prefixes of several lengths
    assert max(prefix_rows) == len(jobs) and len(prefix_rows) > 1  # one batch of windows, cut at several points
    for i, job in enumerate(jobs):
        slow = score_allele_naive(tiny_model, StrandView(genome, reverse=False), job, window=WINDOW,
                                  downstream=DOWNSTREAM)
        assert fast[i].llr == pytest.approx(slow.llr, rel=1e-4, abs=1e-4), job
        for d in tiny_model.config.mrl_dims:
            assert fast[i].l2[d] == pytest.approx(slow.l2[d], rel=1e-4, abs=1e-5), (job, d)
            assert fast[i].cosine[d] == pytest.approx(slow.cosine[d], rel=1e-3, abs=1e-6), (job, d)

def test_alt_equal_to_ref_scores_zero(tmp_path, tiny_model):
    genome = _genome(tmp_path)
    jobs = [j for j in _jobs(genome) if j.ref == j.alt]
    assert len(jobs) == 2
    for reverse in (False, True):
        scores = AlleleScorer(tiny_model, window=WINDOW, downstream=DOWNSTREAM).score_strand(
            StrandView(genome, reverse), jobs)
        for s in scores.values():
            assert s.n > 0
            assert s.llr == 0.0
            assert all(abs(v) < 1e-6 for v in s.cosine.values()) and all(v == 0.0 for v in s.l2.values())


def test_batch_size_does_not_change_scores(tmp_path, tiny_model):
    genome = _genome(tmp_path)
    jobs = _jobs(genome)
    view = StrandView(genome, reverse=False)
    a = AlleleScorer(tiny_model, window=WINDOW, downstream=DOWNSTREAM, batch_size=2).score_strand(view, jobs)
    b = AlleleScorer(tiny_model, window=WINDOW, downstream=DOWNSTREAM, batch_size=64).score_strand(view, jobs)
    for i in a:
        if a[i].llr is not None:
            assert a[i].llr == pytest.approx(b[i].llr, rel=1e-4, abs=1e-5)
