"""The causal selection's per-chunk pools merged by the Triton kernel (kernels/selection_pools.py,
select_causal(impl="triton")) against the torch rule (one sorted top-k per chunk, impl="naive"):
positions, validity, budgets and the carried pool equal exactly."""
from __future__ import annotations

import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels

import_kernels("genossa.kernels.selection_pools", "_chunk_pools_kernel")

from genossa.ops.sparse_attention import select_causal  # noqa: E402


def scores(B, T, seed, ties):
    g = torch.Generator().manual_seed(seed)
    imp, comp = torch.randn(B, T, generator=g), torch.rand(B, T, generator=g)
    if ties:  # few distinct values: equal scores rank the later position first
        imp = torch.round(imp * 2) / 2
    imp[:, ::11] = -torch.inf  # positions that rank below every finite score, above empty entries
    return imp.to(DEVICE), comp.to(DEVICE)


def assert_same(kw, imp, comp, state=None):
    ref, ref_state = select_causal(imp, comp, impl="naive", state=state, **kw)
    out, out_state = select_causal(imp, comp, impl="triton", state=state, **kw)
    for name, a, b in zip(("pos", "valid", "budget", "pool score", "pool pos"), (*out, *out_state), (*ref, *ref_state)):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), name
    return out, out_state


@pytest.mark.parametrize("T,C,W,cap", [
    (1, 4, 3, 5),       # one chunk, nothing to select
    (97, 8, 5, 3),      # C > cap: a block holds more than a pool
    (200, 16, 16, 40),  # runs of 2 blocks, a partial last run
    (333, 32, 7, 64),   # cap, C powers of two; a partial last chunk
    (300, 8, 10, 64),   # runs of 8 blocks
    (260, 4, 9, 30),    # runs of 7 blocks, cap not a power of two
])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_torch_rule(T, C, W, cap, ties):
    imp, comp = scores(2, T, T + C, ties)
    sel, _ = assert_same(dict(q_start=0, n_queries=T, chunk_size=C, window=W, base=2, alpha=7.0, cap=cap), imp, comp)
    if T > 2 * cap + C + W:
        assert bool(sel.valid.any()) and not bool(sel.valid.all())  # the budget cuts some lists short


def test_streaming_pieces_match_torch_rule():
    """Calls after the first start from the carried pool (its keys merged like any run's pool)."""
    T, C, W, cap = 256, 16, 20, 24
    imp, comp = scores(2, T, 3, ties=True)
    kw = dict(chunk_size=C, window=W, base=3, alpha=30.0, cap=cap)
    state = None
    for start, stop in ((0, 16), (16, 112), (112, 128), (128, 256)):
        lo = max(0, start - W - C)
        _, state = assert_same(dict(q_start=start, n_queries=stop - start, score_start=lo, **kw),
                               imp[:, lo:stop], comp[:, lo:stop], state)


@pytest.mark.gpu
@gpu
def test_gpu_layer_shapes():
    """The layer benchmark's shapes (chunk 128, window 512, cap 2,048) over many runs of 16 chunks."""
    imp, comp = scores(1, 300_000, 7, ties=True)
    assert_same(dict(q_start=0, n_queries=300_000, chunk_size=128, window=512, base=1024, alpha=2048.0, cap=2048),
                imp, comp)
