"""Streaming (chunk by chunk, carrying conv/SSM state and the attention cache) == one-shot."""
import pytest
import torch

from genossa.models import GenossaLM, iter_stream, stream, tiny


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = tiny(attn_window=24, attn_chunk=8, topk_base=2, topk_alpha=8.0, topk_cap=6, ssm_chunk=16)
    # fp64: a top-k near-tie could flip under fp32 reassociation; here selections must agree exactly
    return GenossaLM(cfg).double().eval()


@pytest.mark.parametrize("T,chunk_len", [(300, 64), (300, 8), (77, 40), (130, 136)])
def test_stream_equals_one_shot(model, T, chunk_len):
    tokens = torch.randint(0, 5, (2, T), generator=torch.Generator().manual_seed(T + chunk_len))
    with torch.no_grad():
        full = model(tokens)
    got = stream(model, tokens, chunk_len)
    assert got.logits.shape == full.logits.shape
    torch.testing.assert_close(got.logits, full.logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got.embeddings, full.embeddings, rtol=1e-10, atol=1e-10)
    assert got.state.pos == T


def test_uneven_chunks_and_cache_size(model):
    T = 256
    tokens = torch.randint(0, 5, (1, T), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(tokens).logits
    pieces = [tokens[:, :16], tokens[:, 16:104], tokens[:, 104:200], tokens[:, 200:]]
    outs = list(iter_stream(model, pieces))
    torch.testing.assert_close(torch.cat([o.logits for o in outs], 1), full, rtol=1e-10, atol=1e-10)
    # the attention cache stays O(window + chunk + cap), whatever the length
    cache = outs[-1].state.blocks[0].attention
    cfg = model.config
    assert cache.k.shape[1] == cfg.attn_window + cfg.attn_chunk
    assert cache.pool_k.shape[1] == cfg.topk_cap



def test_state_holds_only_its_own_rows(model):
    """Every tensor of the state after a long piece owns a storage of its own size: no view of the
    piece's activations (keys, values, conv inputs: O(piece) per layer) is kept alive by the state."""
    tokens = torch.randint(0, 5, (2, 512), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        state = model(tokens, return_state=True).state
    tensors = [t for block in state.blocks for part in block for t in _tensors(part)]
    assert tensors
    for t in tensors:
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), tuple(t.shape)


def _tensors(obj):
    """The tensors in a (nested) state tuple."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, tuple):
        return [t for item in obj for t in _tensors(item)]
    return []

def test_stream_rejects_misaligned_chunks(model):
    tokens = torch.randint(0, 5, (1, 40))
    with pytest.raises(ValueError, match="multiple of attn_chunk"):
        stream(model, tokens, 12)
    with torch.no_grad():
        state = model(tokens[:, :12], return_state=True).state
        with pytest.raises(ValueError, match="cannot continue after 12 tokens"):
            model(tokens[:, 12:], state=state)


def test_bidirectional_model_cannot_stream():
    model = GenossaLM(tiny(causal=False, n_layers=1))
    with pytest.raises(ValueError, match="causal"):
        model(torch.zeros(1, 16, dtype=torch.long), return_state=True)


def test_streams_cut_at_different_points_continue_in_one_batch(model):
    """shift_state: a stream cut at 96 tokens, moved to 136, continues exactly as it would have;
    with a stream cut at 136 it makes one batch whose rows equal each stream continued alone."""
    from genossa.models.hybrid import cat_states, shift_state

    gen = torch.Generator().manual_seed(11)
    a, b = torch.randint(0, 5, (1, 96 + 48), generator=gen), torch.randint(0, 5, (1, 136 + 48), generator=gen)
    assert model.state_can_shift(96) and not model.state_can_shift(24)  # window 24 + chunk 8
    with torch.no_grad():
        state_a = model(a[:, :96], return_state=True).state
        state_b = model(b[:, :136], return_state=True).state
        alone_a = model(a[:, 96:], state=state_a).logits
        alone_b = model(b[:, 136:], state=state_b).logits
        moved = shift_state(state_a, 136)
        pools = [blk.attention.pool.pos for blk in moved.blocks]
        assert all(((p == -1) | (p >= 40)).all() for p in pools) and any((p >= 0).any() for p in pools)
        both = model(torch.cat([a[:, 96:], b[:, 136:]]), state=cat_states([moved, state_b])).logits
    torch.testing.assert_close(both[:1], alone_a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(both[1:], alone_b, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="different positions"):
        cat_states([state_a, state_b])
