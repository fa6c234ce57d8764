"""The model study's ablations (issue 9): positional selections ('random', 'strided') instead of the
scan's importance, attention off (Mamba2 only), and dense attention (local span >= the sequence).

Positional selections must stay causal and streamable and pick exactly the keys their rule names;
the attention-off model has no attention parameters and still trains and streams; a window that
covers the sequence is full causal attention.
"""
import pytest
import torch

from genossa.config import load_config
from genossa.errors import ConfigError
from genossa.models import GenossaLM, stream, tiny
from genossa.modules import ScanSparseAttention
from genossa.modules.scan_attention import positional_importance
from genossa.ops.sparse_attention import budget, combine_scales, dense_masked_attention, dense_pattern_mask

ABLATION_KW = dict(attn_window=16, attn_chunk=8, topk_base=2, topk_alpha=8.0, topk_cap=6)


# causality of the positional selections: tests/models/test_causality.py (parametrized over selections)


@pytest.mark.parametrize("selection", ["change", "random", "strided"])
@pytest.mark.parametrize("T,chunk_len", [(300, 64), (300, 8), (130, 136)])
def test_positional_selection_streams_like_one_shot(selection, T, chunk_len):
    torch.manual_seed(0)
    # fp64 as in test_streaming.py, so that the budget (floor of alpha * complexity) cannot flip
    model = GenossaLM(tiny(selection=selection, attn_window=24, attn_chunk=8, topk_base=2, topk_alpha=8.0,
                           topk_cap=6, ssm_chunk=16)).double().eval()
    tokens = torch.randint(0, 5, (2, T), generator=torch.Generator().manual_seed(T + chunk_len))
    with torch.no_grad():
        full = model(tokens)
    got = stream(model, tokens, chunk_len)
    torch.testing.assert_close(got.logits, full.logits, rtol=1e-10, atol=1e-10)
    assert got.state.pos == T


def test_positional_importance_depends_on_the_position_only():
    for kind in ("random", "strided"):
        whole = positional_importance(kind, 0, 1000, stride=16)
        assert whole.dtype == torch.float32
        torch.testing.assert_close(positional_importance(kind, 333, 400, stride=16), whole[333:733], rtol=0, atol=0)
    rnd = positional_importance("random", 0, 1 << 16, stride=16)
    assert 0 <= rnd.min() and rnd.max() < 1
    assert rnd.unique().numel() > 0.99 * rnd.numel()  # a hash, not a pattern: nearly no ties
    assert abs(rnd.mean().item() - 0.5) < 0.01
    strided = positional_importance("strided", 0, 100, stride=16)
    on = torch.arange(100) % 16 == 0
    assert (strided[~on] == 0).all()
    assert torch.equal(strided[on], torch.arange(1, 8, dtype=torch.float32))  # later = higher
    with pytest.raises(ValueError, match="kind"):
        positional_importance("scan", 0, 10, stride=16)


def _expected_selection(kind: str, T: int, attn: ScanSparseAttention, complexity: torch.Tensor):
    """The keys the rule names, written out per chunk: the top-k(i0) positions j < i0 - window by
    positional importance, k(i0) from the mean complexity of [i0 - chunk, i0) (the scan's budget)."""
    C, W = attn.chunk_size, attn.window
    scores = positional_importance(kind, 0, T, stride=W)
    n_chunks = -(-T // C)
    bsz = complexity.shape[0]
    pos = torch.full((bsz, n_chunks, attn.topk_cap), -1)
    for c in range(n_chunks):
        i0 = c * C
        k = budget(complexity[:, max(0, i0 - C):i0].mean(1) if i0 else complexity.new_zeros(bsz),
                   attn.topk_base, attn.topk_alpha, attn.topk_cap)
        n_cand = max(0, i0 - W)
        order = scores[:n_cand].argsort(descending=True, stable=True)
        for b in range(bsz):
            take = order[: min(int(k[b]), n_cand)]
            pos[b, c, : take.numel()] = take
    return pos, pos >= 0


@pytest.mark.parametrize("kind", ["random", "strided"])
def test_positional_selection_attends_to_the_keys_its_rule_names(kind):
    """The module's output equals dense attention under the mask of the expected selection."""
    torch.manual_seed(1)
    T, bsz = 200, 2
    attn = ScanSparseAttention(32, 24, 2, 8, summary_dim=8, window=16, chunk_size=8, topk_base=2, topk_alpha=8.0,
                               topk_cap=4, selection=kind, impl="naive").double()
    x, scan = torch.randn(bsz, T, 32, dtype=torch.float64), torch.randn(bsz, T, 24, dtype=torch.float64)
    norm, change = torch.rand(bsz, T, 3, dtype=torch.float64), torch.rand(bsz, T, 3, dtype=torch.float64)
    with torch.no_grad():
        got = attn(x, scan, norm, change)
        _, complexity = combine_scales(norm, change)
        pos, valid = _expected_selection(kind, T, attn, complexity)
        q, k, v, kb = attn._project(x, scan)
        mask = dense_pattern_mask(T, pos, valid, chunk_size=8, window=16, causal=True)
        want = attn.out_proj(dense_masked_attention(q, k, v, mask, scale=1.0, key_bias=kb).flatten(2))
    # strided: while fewer than k strided candidates exist, the rest tie at score 0 and the choice
    # among them is arbitrary; from query 16 + 3 * 16 on there are >= cap = 4 strided candidates
    first = 0 if kind == "random" else 16 + 3 * 16 + 8
    torch.testing.assert_close(got[:, first:], want[:, first:], rtol=1e-10, atol=1e-10)
    # and the rule is not the scan's: ranking by importance would pick other keys
    imp, _ = combine_scales(norm, change)
    scan_pos = imp[0, : T - 16 - 8].argsort(descending=True)[:4]
    assert set(scan_pos.tolist()) != set(pos[0, -1][valid[0, -1]].tolist())


def test_attention_off_has_no_attention_parameters_and_trains():
    torch.manual_seed(0)
    model = GenossaLM(tiny(attention=False))
    names = [n for n, _ in model.named_parameters()]
    assert not any(".attention." in n or ".fusion." in n for n in names)
    assert all(block.attention is None and block.fusion is None for block in model.blocks)
    full = GenossaLM(tiny())
    removed = sum(p.numel() for b in full.blocks for m in (b.attention, b.fusion) for p in m.parameters())
    assert model.num_parameters() == full.num_parameters() - removed
    tokens = torch.randint(0, 4, (1, 128), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = model.compute_loss(tokens)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[0] > 2.0
    assert losses[-1] < 0.5 * losses[0], losses[-1]


def test_attention_off_streams_like_one_shot():
    torch.manual_seed(0)
    model = GenossaLM(tiny(attention=False, attn_chunk=8, ssm_chunk=16)).double().eval()
    tokens = torch.randint(0, 5, (2, 203), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(tokens)
    got = stream(model, tokens, 64)
    torch.testing.assert_close(got.logits, full.logits, rtol=1e-10, atol=1e-10)
    assert all(bs.attention is None for bs in got.state.blocks)


def test_window_covering_the_sequence_is_dense_causal_attention():
    """The study's dense ceiling: attn_window >= T leaves no candidate to select, and the local
    span is every earlier key: exactly softmax attention with a lower-triangular mask."""
    torch.manual_seed(2)
    T, bsz = 150, 2
    model = GenossaLM(tiny(attn_window=T, attn_chunk=16, kernels="naive")).double().eval()
    attn = model.blocks[0].attention
    x = torch.randn(bsz, T, 128, dtype=torch.float64)
    scan = torch.randn(bsz, T, model.config.ssm_inner, dtype=torch.float64)
    norm, change = torch.rand(bsz, T, 3, dtype=torch.float64), torch.rand(bsz, T, 3, dtype=torch.float64)
    with torch.no_grad():
        got = attn(x, scan, norm, change)
        q, k, v, kb = attn._project(x, scan)
        causal = torch.ones(T, T, dtype=torch.bool).tril()[None].expand(bsz, -1, -1)
        want = attn.out_proj(dense_masked_attention(q, k, v, causal, scale=1.0, key_bias=kb).flatten(2))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_ablation_fields_load_strictly():
    cfg = load_config("tiny", {"model.selection": "random", "model.attention": True})
    assert cfg.model.selection == "random" and cfg.model.attention is True
    assert load_config("tiny").model.selection == "scan"
    with pytest.raises(ConfigError, match="model.selection"):
        load_config("tiny", {"model.selection": "topk"})
    with pytest.raises(ConfigError, match="model.attention"):
        load_config("tiny", {"model.attention": "false,"})
    with pytest.raises(ConfigError, match="no effect"):
        load_config("tiny", {"model.attention": False, "model.selection": "strided"})


def test_change_selection_ranks_by_the_state_change_alone():
    """selection='change': the selected keys are select_causal's on sum_s log(change_s) (no ||h_t||),
    with the scan's complexity budget; they differ from the design's 'scan' selection."""
    from genossa.ops.sparse_attention import change_importance, select_causal

    torch.manual_seed(0)
    model = GenossaLM(tiny(selection="change", **ABLATION_KW)).double().eval()
    attention = model.blocks[0].attention
    attention.record_selection = True
    seen = {}
    hook = attention.register_forward_pre_hook(lambda module, args: seen.update(args=args))
    tokens = torch.randint(0, 4, (1, 200), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(tokens)
    hook.remove()
    _, _, norm, change = seen["args"]
    _, complexity = combine_scales(norm, change)
    kw = dict(q_start=0, n_queries=200, chunk_size=8, window=16, base=2, alpha=8.0, cap=6)
    expected, _ = select_causal(change_importance(change), complexity, **kw)
    got = attention.last_selection
    assert torch.equal(got.pos[got.valid], expected.pos[expected.valid])
    scan, _ = select_causal(*combine_scales(norm, change), **kw)
    assert not torch.equal(scan.pos[scan.valid], expected.pos[expected.valid])
