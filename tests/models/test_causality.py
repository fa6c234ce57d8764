"""In causal mode no output at positions <= t depends on a token after t, with top-k selection
active (the budget is far below the number of candidates), for the scan's selection and for the
study's positional ablations (random, strided)."""
import pytest
import torch

from genossa.models import GenossaLM, tiny
from genossa.modules import ScanSparseAttention
from genossa.ops.sparse_attention import combine_scales, select_bidirectional, select_causal


@pytest.fixture(scope="module", params=["scan", "change", "random", "strided"])
def model(request):
    torch.manual_seed(0)
    # budget 2..6 of up to ~200 candidates per chunk: the top-k is selective
    cfg = tiny(attn_window=16, attn_chunk=8, topk_base=2, topk_alpha=8.0, topk_cap=6, selection=request.param)
    return GenossaLM(cfg).eval()


@pytest.mark.parametrize("T", [57, 128, 250])
def test_future_tokens_do_not_change_past_outputs(model, T):
    g = torch.Generator().manual_seed(T)
    tokens = torch.randint(0, 5, (2, T), generator=g)
    with torch.no_grad():
        base = model(tokens)
    for t in torch.randint(0, T - 1, (4,), generator=g).tolist():
        perturbed = tokens.clone()
        perturbed[:, t + 1:] = torch.randint(0, 5, (2, T - t - 1), generator=g)
        with torch.no_grad():
            out = model(perturbed)
        # fp32; the masked future terms multiply by exactly 0, so equality is expected to be exact
        torch.testing.assert_close(out.logits[:, : t + 1], base.logits[:, : t + 1], rtol=0, atol=1e-6)
        torch.testing.assert_close(out.embeddings[:, : t + 1], base.embeddings[:, : t + 1], rtol=0, atol=1e-6)
        if (perturbed[:, t + 1:] != tokens[:, t + 1:]).any():
            assert not torch.allclose(out.logits[:, t + 1:], base.logits[:, t + 1:])


def test_selection_is_active_in_the_causality_setting(model):
    """In the model above each late chunk uses k <= cap keys out of hundreds of candidates."""
    block = model.blocks[0]
    attn: ScanSparseAttention = block.attention
    T = 250
    tokens = torch.randint(0, 5, (2, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m = block.mixer(block.norm1(model.embedding(tokens)))
    imp, comp = combine_scales(m.norm, m.change)
    sel, _ = select_causal(imp, comp, q_start=0, n_queries=T, chunk_size=attn.chunk_size, window=attn.window,
                           base=attn.topk_base, alpha=attn.topk_alpha, cap=attn.topk_cap)
    used = sel.valid.sum(-1)  # [B, NC]
    late = T // attn.chunk_size - 1
    candidates = late * attn.chunk_size - attn.window
    assert (used[:, late] >= attn.topk_base).all() and (used[:, late] <= attn.topk_cap).all()
    assert attn.topk_cap * 20 < candidates


def test_global_topk_would_leak():
    """Why causal mode may not use a global top-k: the keys chosen for an early chunk change
    when only importances after that chunk change (the perturbation test would catch it)."""
    g = torch.Generator().manual_seed(1)
    imp, comp = torch.rand(1, 200, generator=g), torch.rand(1, 200, generator=g)
    kw = dict(chunk_size=16, window=16, base=4, alpha=0.0, cap=4)
    before = select_bidirectional(imp, comp, **kw)
    imp2 = imp.clone()
    imp2[:, 150:] += 10  # only the future of chunk 4 (positions 64..79)
    after = select_bidirectional(imp2, comp, **kw)
    assert not torch.equal(before.pos[:, 4], after.pos[:, 4])
