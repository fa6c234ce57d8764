"""The pair lists kernel (kernels/pair_rows.py) against its rule written in Python: each pair of
neighbouring chunks gets the union of their lists' rows, in increasing order, each with bit 0 where
chunk 2p's list holds it and bit 1 where chunk 2p + 1's does."""
from __future__ import annotations

import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels

pair_mod = import_kernels("genossa.kernels.pair_rows", "_pair_rows_kernel")

from genossa.ops.sparse_attention import select_causal  # noqa: E402
from genossa.kernels.selection_rows import selection_rows  # noqa: E402


def expected(rows, cnt):
    """[B][NP] lists of (row, bits), the rule of the module docstring."""
    bsz, n_chunks, _ = rows.shape
    out = []
    for b in range(bsz):
        pairs = []
        for c in range(0, n_chunks, 2):
            first = set(rows[b, c, : cnt[b, c]].tolist())
            second = set(rows[b, c + 1, : cnt[b, c + 1]].tolist()) if c + 1 < n_chunks else set()
            pairs.append([(r, (r in first) | 2 * (r in second)) for r in sorted(first | second)])
        out.append(pairs)
    return out


def check(rows, cnt):
    got_rows, got_bits, got_cnt = pair_mod.pair_rows(rows.to(DEVICE), cnt.to(DEVICE))
    want = expected(rows, cnt)
    assert got_rows.shape == got_bits.shape == (rows.shape[0], len(want[0]), 2 * rows.shape[2])
    for b, pairs in enumerate(want):
        for p, entries in enumerate(pairs):
            n = int(got_cnt[b, p])
            assert n == len(entries), (b, p)
            got = list(zip(got_rows[b, p, :n].tolist(), got_bits[b, p, :n].tolist()))
            assert got == entries, (b, p)


def random_lists(B, NC, K, n_rows, seed, overlap):
    """Distinct rows per list, neighbouring lists sharing about `overlap` of their rows; random counts
    (some lists empty, some full)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.zeros(B, NC, K, dtype=torch.int32)
    for b in range(B):
        prev = torch.randperm(n_rows, generator=g)[:K]
        for c in range(NC):
            fresh = torch.randperm(n_rows, generator=g)
            fresh = fresh[~torch.isin(fresh, prev)]
            n_keep = int(overlap * K)
            cur = torch.cat([prev[torch.randperm(K, generator=g)[:n_keep]], fresh[: K - n_keep]])
            rows[b, c] = cur[torch.randperm(K, generator=g)].to(torch.int32)
            prev = cur
    cnt = torch.randint(0, K + 1, (B, NC), generator=g, dtype=torch.int32)
    cnt[0, 0], cnt[-1, -1] = 0, K
    return rows, cnt


@pytest.mark.parametrize("NC", [1, 4, 7])
@pytest.mark.parametrize("K,overlap", [(5, 0.0), (16, 0.9), (37, 0.5)])
def test_matches_rule(NC, K, overlap):
    """Disjoint, mostly shared and half shared neighbours; an odd number of chunks (the last pair's
    second list empty); list lengths that are no power of two."""
    rows, cnt = random_lists(2, NC, K, n_rows=4 * K + 3, seed=NC * 100 + K, overlap=overlap)
    check(rows, cnt)


def test_real_selection_and_empty():
    """select_causal's lists as selection_rows compacts them (the model's use), and no lists."""
    g = torch.Generator().manual_seed(3)
    imp, comp = torch.randn(1, 300, generator=g), torch.rand(1, 300, generator=g)
    kw = dict(q_start=0, chunk_size=16, window=32)
    sel, _ = select_causal(imp.to(DEVICE), comp.to(DEVICE), n_queries=300, base=20, alpha=4.0, cap=40, **kw)
    rows, cnt = selection_rows(sel.pos, sel.valid, causal=True, k_start=0, **kw)
    check(rows.cpu(), cnt.cpu())
    _, _, pair_cnt = pair_mod.pair_rows(rows, cnt)
    # neighbours share most keys: the pairs' lists are far shorter than two lists
    assert pair_cnt.sum() < 0.75 * cnt.sum()
    for shape in [(1, 0, 8), (2, 3, 0)]:
        out, bits, n = pair_mod.pair_rows(torch.zeros(shape, dtype=torch.int32, device=DEVICE),
                                          torch.zeros(shape[:2], dtype=torch.int32, device=DEVICE))
        assert n.shape == (shape[0], -(-shape[1] // 2)) and not n.any()


@gpu
@pytest.mark.gpu
def test_long_lists_on_gpu():
    """The model's sizes: lists of 2,048 rows (4,096-entry sorts)."""
    rows, cnt = random_lists(1, 6, 2048, n_rows=20000, seed=5, overlap=0.9)
    check(rows, cnt)
