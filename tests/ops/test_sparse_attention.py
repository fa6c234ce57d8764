"""Sparse attention reference against dense masked attention, the selection rules (no leakage,
no duplicates, prefix top-k), and the bias folding."""
import math

import pytest
import torch

from genossa.ops.sparse_attention import (
    budget,
    combine_scales,
    dense_masked_attention,
    dense_pattern_mask,
    fold_scan_bias,
    gather_selected,
    naive_sparse_attention,
    select_bidirectional,
    select_causal,
    sparse_attention,
)



def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def rand_qkv(T, *, B=2, H=3, D=8, Dv=5, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, D, generator=g, dtype=dtype)
    k = torch.randn(B, T, H, D, generator=g, dtype=dtype)
    v = torch.randn(B, T, H, Dv, generator=g, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (q, k, v)]


def select(T, causal, *, C, W, base, alpha, cap, seed=0, B=2):
    g = torch.Generator().manual_seed(seed + 100)
    imp, comp = torch.rand(B, T, generator=g), torch.rand(B, T, generator=g)
    if causal:
        sel, _ = select_causal(imp, comp, q_start=0, n_queries=T, chunk_size=C, window=W, base=base, alpha=alpha, cap=cap)
    else:
        sel = select_bidirectional(imp, comp, chunk_size=C, window=W, base=base, alpha=alpha, cap=cap)
    return sel, imp, comp


CASES = [(1, 4, 3), (37, 8, 5), (100, 16, 16), (130, 16, 40), (63, 32, 7)]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,C,W", CASES)
def test_sparse_equals_dense_masked_on_same_pattern(T, C, W, causal):
    q, k, v = rand_qkv(T, requires_grad=True)
    sel, _, _ = select(T, causal, C=C, W=W, base=1, alpha=4.0, cap=5)
    out = sparse_attention(q, k, v, gather_selected(k, sel.pos), gather_selected(v, sel.pos), sel.pos, sel.valid,
                           chunk_size=C, window=W, causal=causal)
    mask = dense_pattern_mask(T, sel.pos, sel.valid, chunk_size=C, window=W, causal=causal)
    ref = dense_masked_attention(q, k, v, mask)
    assert rel(out, ref) < 1e-12
    cot = torch.randn_like(out)
    g_out = torch.autograd.grad((out * cot).sum(), (q, k, v))
    g_ref = torch.autograd.grad((ref * cot).sum(), (q, k, v))
    for a, b in zip(g_out, g_ref):  # at T = 1 the q gradient is exactly 0: bound absolutely there
        assert (a - b).norm() <= 1e-12 * max(b.norm().item(), 1.0)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,C,W", CASES)
def test_full_budget_equals_dense_attention(T, C, W, causal):
    q, k, v = rand_qkv(T, dtype=torch.float32, seed=1)
    sel, _, _ = select(T, causal, C=C, W=W, base=T, alpha=0.0, cap=T)
    out = sparse_attention(q, k, v, gather_selected(k, sel.pos), gather_selected(v, sel.pos), sel.pos, sel.valid,
                           chunk_size=C, window=W, causal=causal)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
    ).transpose(1, 2)
    assert rel(out, ref) < 1e-5  # fp32


def test_duplicates_and_window_keys_count_once():
    """A hand-made list repeating a key and listing keys of the local span."""
    T, C, W = 48, 8, 4
    q, k, v = rand_qkv(T, B=1, seed=2)
    n_chunks = T // C
    pos = torch.tensor([[3, 3, 20, 5, 5, -1]]).repeat(n_chunks, 1)[None]  # [1, NC, 6]
    valid = pos >= 0
    out = naive_sparse_attention(q, k, v, gather_selected(k, pos), gather_selected(v, pos), pos, valid,
                                 chunk_size=C, window=W)
    ref = dense_masked_attention(q, k, v, dense_pattern_mask(T, pos, valid, chunk_size=C, window=W))
    assert rel(out, ref) < 1e-12


def test_selected_keys_never_after_query_even_if_listed():
    T, C, W = 32, 8, 2
    q, k, v = rand_qkv(T, B=1, seed=3)
    pos = torch.full((1, T // C, 2), 31)  # the last key, listed for every chunk
    valid = torch.ones_like(pos, dtype=torch.bool)
    out = naive_sparse_attention(q, k, v, gather_selected(k, pos), gather_selected(v, pos), pos, valid,
                                 chunk_size=C, window=W)
    k2 = k.clone()
    k2[:, 31] += 10.0
    out2 = naive_sparse_attention(q, k2, v, gather_selected(k2, pos), gather_selected(v, pos), pos, valid,
                                  chunk_size=C, window=W)
    assert torch.equal(out[:, :31], out2[:, :31])


def test_causal_selection_is_prefix_topk_outside_window():
    T, C, W, cap = 200, 16, 24, 7
    sel, imp, comp = select(T, True, C=C, W=W, base=2, alpha=10.0, cap=cap)
    for c in range(sel.pos.shape[1]):
        i0 = c * C
        for b in range(2):
            k = int(sel.budget[b, c])
            cand = max(0, i0 - W)
            expected = imp[b, :cand].topk(min(k, cand)).indices if cand else torch.empty(0, dtype=torch.long)
            got = sel.pos[b, c][sel.valid[b, c]]
            assert sorted(got.tolist()) == sorted(expected.tolist())
            assert (got < i0 - W).all()
            prev = comp[b, max(0, i0 - C):i0]
            want_k = min(cap, 2 + math.floor(10.0 * prev.mean().item())) if i0 else 2
            assert k == want_k


def test_causal_selection_ignores_future_importance():
    T, C, W = 160, 16, 16
    g = torch.Generator().manual_seed(7)
    imp, comp = torch.rand(1, T, generator=g), torch.rand(1, T, generator=g)
    kw = dict(q_start=0, n_queries=T, chunk_size=C, window=W, base=2, alpha=5.0, cap=4)
    sel, _ = select_causal(imp, comp, **kw)
    for t in (17, 64, 100):
        imp2, comp2 = imp.clone(), comp.clone()
        imp2[:, t:] = torch.rand(1, T - t, generator=g) * 100
        comp2[:, t:] = torch.rand(1, T - t, generator=g)
        sel2, _ = select_causal(imp2, comp2, **kw)
        chunks = t // C + (t % C == 0)  # chunks starting at or before t
        n_same = -(-t // C) if t % C else t // C + 1
        assert torch.equal(sel.pos[:, :n_same], sel2.pos[:, :n_same]), (t, chunks)
        assert torch.equal(sel.valid[:, :n_same], sel2.valid[:, :n_same])


def test_bidirectional_selection_is_global_topk_outside_span():
    T, C, W = 120, 16, 8
    sel, imp, _ = select(T, False, C=C, W=W, base=5, alpha=0.0, cap=5)
    for c in range(sel.pos.shape[1]):
        i0 = c * C
        outside = [j for j in range(T) if j < i0 - W or j >= i0 + C + W]
        for b in range(2):
            expected = sorted(outside, key=lambda j: -imp[b, j].item())[:5]
            assert sorted(sel.pos[b, c][sel.valid[b, c]].tolist()) == sorted(expected)


def test_memory_is_linear_in_length():
    """Bytes of every tensor saved for backward, at T and 4T (an (n x n) object would be 16x)."""
    def saved_bytes(T):
        q, k, v = rand_qkv(T, B=1, H=2, D=8, Dv=8, dtype=torch.float32, requires_grad=True)
        sel, _, _ = select(T, True, C=32, W=32, base=8, alpha=0.0, cap=8, B=1)
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sparse_attention(q, k, v, gather_selected(k, sel.pos), gather_selected(v, sel.pos), sel.pos, sel.valid,
                             chunk_size=32, window=32)
        return sum(storages.values())

    small, large = saved_bytes(512), saved_bytes(2048)
    assert 3.6 < large / small < 4.4, large / small


def test_fold_scan_bias_is_the_biased_logit():
    g = torch.Generator().manual_seed(9)
    B, T, H, D = 2, 7, 3, 4
    q, k, ws, wks = (torch.randn(B, T, H, D, generator=g, dtype=torch.float64) for _ in range(4))
    lam, mu = torch.randn(H, generator=g, dtype=torch.float64), torch.randn(H, generator=g, dtype=torch.float64)
    qf, kf, kb = fold_scan_bias(q, k, ws, wks, lam, mu, scale=0.5)
    assert qf.shape == kf.shape == (B, T, H, D) and kb.shape == (B, T, H)
    assert kb.dtype == torch.float64
    assert fold_scan_bias(*(t.half() for t in (q, k, ws, wks)), lam, mu, 0.5)[2].dtype == torch.float32  # 16-bit: fp32 bias
    got = torch.einsum("bihd,bjhd->bhij", qf, kf) + kb.transpose(1, 2)[:, :, None, :]
    want = (0.5 * torch.einsum("bihd,bjhd->bhij", q, k)
            + lam[:, None, None] * torch.einsum("bihd,bjhd->bhij", q, ws)
            + mu[:, None, None] * (k * wks).sum(-1).transpose(1, 2)[:, :, None, :])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # both bias terms vary with the key: they do not cancel in the softmax
    assert (want - 0.5 * torch.einsum("bihd,bjhd->bhij", q, k)).std(-1).min() > 0


def test_combine_scales_and_budget():
    norm = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
    change = torch.tensor([[[1.0, 1.0], [0.0, 2.0]]])
    imp, comp = combine_scales(norm, change)
    torch.testing.assert_close(imp, torch.tensor([[math.log(2) + math.log(4), math.log(1e-6) + math.log(2)]]),
                               rtol=1e-5, atol=1e-5)
    # scaling one scale's norms shifts every position equally: the ranking is unchanged
    imp2, _ = combine_scales(norm * torch.tensor([1.0, 100.0]), change * torch.tensor([1.0, 100.0]))
    torch.testing.assert_close(imp2[:, 0] - imp[:, 0], torch.tensor([math.log(100)]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(comp, torch.tensor([[(0.5 + 0.25) / 2, (0.0 + 1.0) / 2]]), atol=1e-5, rtol=1e-5)
    k = budget(torch.tensor([0.0, 0.49, 0.99]), base=3, alpha=10.0, cap=10)
    assert k.tolist() == [3, 7, 10]


def test_unknown_impl_is_an_error():
    q, k, v = rand_qkv(8)
    pos = torch.full((2, 1, 1), -1)
    with pytest.raises(ValueError, match="unknown impl"):
        sparse_attention(q, k, v, gather_selected(k, pos), gather_selected(v, pos), pos, pos >= 0,
                         chunk_size=8, window=4, impl="cuda")
