"""The causal selection (one parallel scan over blocks) against a brute-force definition:
chunk i0 selects the top-k positions j < i0 - window by (importance, then the later position)."""
import math

import pytest
import torch

from genossa.ops.sparse_attention import select_causal


def brute_force(imp, comp, *, T, C, W, base, alpha, cap):
    """pos [B, NC, cap] (-1 padded, best first) and budgets [B, NC], one chunk at a time."""
    B = imp.shape[0]
    n_chunks = -(-T // C)
    pos = torch.full((B, n_chunks, cap), -1, dtype=torch.long)
    ks = torch.zeros(B, n_chunks, dtype=torch.long)
    for b in range(B):
        for c in range(n_chunks):
            i0 = c * C
            ranked = sorted(range(max(0, i0 - W)), key=lambda j: (-imp[b, j].item(), -j))[:cap]
            pos[b, c, :len(ranked)] = torch.tensor(ranked, dtype=torch.long)
            prev = comp[b, max(0, i0 - C):i0]
            ks[b, c] = min(cap, base + math.floor(alpha * prev.mean().item())) if i0 else base
    return pos, ks


@pytest.mark.parametrize("T,C,W,cap", [(1, 4, 3, 5), (97, 8, 5, 3), (200, 16, 16, 40), (130, 16, 0, 16), (333, 32, 7, 64),
                                       (300, 8, 10, 64), (260, 4, 9, 30)])  # runs of 8 / 7 blocks per scan step
@pytest.mark.parametrize("ties", [False, True])
def test_scan_selection_equals_brute_force(T, C, W, cap, ties):
    g = torch.Generator().manual_seed(T + C)
    imp, comp = torch.randn(2, T, generator=g), torch.rand(2, T, generator=g)
    if ties:  # few distinct values: the order among equal scores must be the later position first
        imp = torch.round(imp * 2) / 2
    sel, state = select_causal(imp, comp, q_start=0, n_queries=T, chunk_size=C, window=W, base=2, alpha=7.0, cap=cap)
    pos, ks = brute_force(imp, comp, T=T, C=C, W=W, base=2, alpha=7.0, cap=cap)
    assert torch.equal(sel.pos, pos)
    assert torch.equal(sel.budget, ks)
    assert torch.equal(sel.valid, (torch.arange(cap) < ks[..., None]) & (pos >= 0))
    # the returned pool is the last chunk's, with its scores
    assert torch.equal(state.pos, pos[:, -1])
    expect = torch.where(pos[:, -1] >= 0, imp.gather(1, pos[:, -1].clamp_min(0)), -torch.inf)
    assert torch.equal(state.score, expect)


def test_scan_selection_in_pieces_with_ties_equals_one_pass():
    T, C, W, cap = 256, 16, 20, 6
    g = torch.Generator().manual_seed(3)
    imp, comp = torch.round(torch.randn(2, T, generator=g)), torch.rand(2, T, generator=g)
    kw = dict(chunk_size=C, window=W, base=2, alpha=6.0, cap=cap)
    full, _ = select_causal(imp, comp, q_start=0, n_queries=T, **kw)
    state, parts = None, []
    for start, stop in ((0, 16), (16, 112), (112, 128), (128, 256)):
        lo = max(0, start - W - C)
        sel, state = select_causal(imp[:, lo:stop], comp[:, lo:stop], q_start=start, n_queries=stop - start,
                                   score_start=lo, state=state, **kw)
        parts.append(sel)
    assert torch.equal(torch.cat([p.pos for p in parts], 1), full.pos)
    assert torch.equal(torch.cat([p.valid for p in parts], 1), full.valid)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("T,C,W,cap", [(50_000, 64, 256, 128), (20_000, 128, 512, 2048)])
def test_gpu_selection_equals_cpu(T, C, W, cap):
    g = torch.Generator().manual_seed(5)
    imp, comp = torch.randn(2, T, generator=g), torch.rand(2, T, generator=g)
    imp[:, ::7] = 0.5  # ties
    kw = dict(q_start=0, n_queries=T, chunk_size=C, window=W, base=cap // 4, alpha=float(cap), cap=cap)
    cpu, cpu_state = select_causal(imp, comp, **kw)
    gpu, gpu_state = select_causal(imp.cuda(), comp.cuda(), **kw)
    for a, b in zip((*cpu, *cpu_state), (*gpu, *gpu_state)):
        assert torch.equal(a, b.cpu())
