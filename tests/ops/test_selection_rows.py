"""The one-pass selection rows kernel (kernels/selection_rows.py) against the torch rule it replaces
for distinct lists: usable_selection(distinct=True) then compact_selection(indexed=True)."""
from __future__ import annotations

import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels

rows_mod = import_kernels("genossa.kernels.selection_rows", "_selection_rows_kernel")

from genossa.ops.sparse_attention import select_causal  # noqa: E402
from genossa.ops.sparse_attention import triton as sat  # noqa: E402


def distinct_lists(B, NC, K, n_pos, seed, p_valid=0.7):
    """Lists of distinct positions in [-1, n_pos - 1) (some -1: empty slots), some entries invalid."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.stack([torch.randperm(n_pos, generator=g)[:K] - 1 for _ in range(B * NC)]).view(B, NC, K)
    valid = torch.rand(B, NC, K, generator=g) < p_valid
    return pos.to(DEVICE), valid.to(DEVICE)


def torch_rows(pos, valid, **kw):
    k_start = kw.pop("k_start")
    use = sat.usable_selection(pos, valid, distinct=True, **kw)
    return sat.compact_selection(use, pos, indexed=True, k_start=k_start)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("K,block", [(37, 16), (64, 64), (200, 1024)])
@pytest.mark.parametrize("q_start,k_start", [(0, 0), (96, 48)])
def test_matches_torch_rule(causal, K, block, q_start, k_start):
    """Lists over several blocks (the running count carried between them) or one, lengths that no
    block divides, streaming offsets; rows and counts equal exactly, zeros after the used rows."""
    kw = dict(q_start=q_start, chunk_size=16, window=24, causal=causal, k_start=k_start)
    pos, valid = distinct_lists(2, 6, K, n_pos=q_start + 6 * 16 + 2 * K, seed=K + q_start)
    rows, cnt = rows_mod.selection_rows(pos, valid, block=block, **kw)
    ref_rows, ref_cnt = torch_rows(pos, valid, **kw)
    assert cnt.dtype == rows.dtype == torch.int32
    assert 0 < cnt.sum() < valid.sum()  # some entries used, some valid ones refused (in the span)
    assert torch.equal(cnt, ref_cnt)
    assert torch.equal(rows, ref_rows)


def test_real_selection_and_empty_lists():
    """select_causal's lists (the model's use), and lists with no entry or no chunk."""
    g = torch.Generator().manual_seed(3)
    imp, comp = torch.randn(1, 300, generator=g), torch.rand(1, 300, generator=g)
    sel, _ = select_causal(imp.to(DEVICE), comp.to(DEVICE), q_start=0, n_queries=300, chunk_size=16, window=32,
                           base=20, alpha=4.0, cap=40)
    kw = dict(q_start=0, chunk_size=16, window=32, causal=True, k_start=0)
    rows, cnt = rows_mod.selection_rows(sel.pos, sel.valid, **kw)
    ref_rows, ref_cnt = torch_rows(sel.pos, sel.valid, **kw)
    assert cnt.max() > 0 and torch.equal(cnt, ref_cnt) and torch.equal(rows, ref_rows)
    for shape in [(1, 3, 0), (1, 0, 8)]:
        rows, cnt = rows_mod.selection_rows(torch.zeros(shape, dtype=torch.long, device=DEVICE),
                                            torch.zeros(shape, dtype=torch.bool, device=DEVICE), **kw)
        assert rows.shape == shape and cnt.shape == shape[:2] and not cnt.any()


@gpu
@pytest.mark.gpu
def test_long_lists_on_gpu():
    """The model's sizes: lists of 2,048 entries over 2 blocks of 1,024."""
    kw = dict(q_start=0, chunk_size=128, window=512, causal=True, k_start=0)
    pos, valid = distinct_lists(1, 64, 2048, n_pos=64 * 128, seed=5)
    rows, cnt = rows_mod.selection_rows(pos, valid, **kw)
    ref_rows, ref_cnt = torch_rows(pos, valid, **kw)
    assert torch.equal(cnt, ref_cnt) and torch.equal(rows, ref_rows)
