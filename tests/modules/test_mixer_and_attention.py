"""Module-level checks: the multi-scale mixer (memory scales, streaming state, bidirectional),
the scan-informed attention (pattern, cache), the fusion gate and the norms."""
import math

import pytest
import torch

from genossa.modules import FusionGate, Mamba2Mixer, RMSNorm, RMSNormGated, ScanSparseAttention, SwiGLU
from genossa.ops.sparse_attention import combine_scales, dense_pattern_mask, select_causal


def make_mixer(**kw):
    torch.manual_seed(0)
    args = dict(n_groups=2, d_conv=4, chunk_size=16, scales=(128, 1024, 4096))
    args.update(kw)
    return Mamba2Mixer(32, 6, 8, 8, **args)


def test_head_groups_have_the_three_memory_scales():
    mixer = make_mixer()
    memory = mixer.memory_lengths().view(3, 2)  # heads grouped by scale
    for m, group in zip((128, 1024, 4096), memory):
        assert ((group >= m / 2 * 0.99) & (group <= 2 * m * 1.01)).all(), (m, group)


def test_mixer_outputs_and_per_scale_importance():
    mixer = make_mixer()
    x = torch.randn(2, 50, 32)
    out = mixer(x)
    assert out.out.shape == (2, 50, 32) and out.scan.shape == (2, 50, 48)
    assert out.norm.shape == (2, 50, 3) and out.change.shape == (2, 50, 3)
    assert not out.norm.requires_grad and (out.norm > 0).all()


def test_mixer_streaming_state_equals_one_pass():
    mixer = make_mixer().double()
    x = torch.randn(2, 70, 32, dtype=torch.float64)
    full = mixer(x)
    state, parts = None, []
    for piece in (x[:, :2], x[:, 2:33], x[:, 33:]):  # one piece shorter than the conv window
        o = mixer(piece, state)
        state = o.state
        parts.append(o)
    for field in ("out", "scan", "norm", "change"):
        got = torch.cat([getattr(p, field) for p in parts], 1)
        torch.testing.assert_close(got, getattr(full, field), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(state.ssm, full.state.ssm, rtol=1e-10, atol=1e-12)


def test_bidirectional_mixer_sees_both_sides():
    mixer = make_mixer(bidirectional=True)
    x = torch.randn(1, 40, 32)
    x2 = x.clone()
    x2[:, 30:] += 1.0
    a, b = mixer(x).out, mixer(x2).out
    assert not torch.allclose(a[:, :30], b[:, :30])  # the past now depends on the future
    with pytest.raises(ValueError, match="cannot stream"):
        mixer(x, make_mixer().empty_state(1))


def make_attention(causal=True):
    torch.manual_seed(1)
    return ScanSparseAttention(32, 48, 2, 8, summary_dim=6, window=8, chunk_size=8, topk_base=2,
                               topk_alpha=4.0, topk_cap=4, causal=causal, bias_init=0.3).double()


def test_attention_equals_dense_reference_of_its_pattern():
    attn = make_attention()
    T = 61
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, T, 32, generator=g, dtype=torch.float64)
    scan = torch.randn(2, T, 48, generator=g, dtype=torch.float64)
    norm, change = torch.rand(2, T, 3, generator=g), torch.rand(2, T, 3, generator=g)
    out = attn(x, scan, norm, change)
    # rebuild it densely: the biased logits and the pattern as a (T x T) mask
    q, k, v = attn.qkv(x).view(2, T, 3, 2, 8).unbind(2)
    s = attn.summary(scan)
    ws, wks = attn.summary_q(s).view(2, T, 2, 8), attn.summary_k(s).view(2, T, 2, 8)
    logits = (torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(8)
              + attn.lam[:, None, None] * torch.einsum("bihd,bjhd->bhij", q, ws)
              + attn.mu[:, None, None] * (k * wks).sum(-1).transpose(1, 2)[:, :, None, :])
    imp, comp = combine_scales(norm, change)
    sel, _ = select_causal(imp, comp, q_start=0, n_queries=T, chunk_size=8, window=8, base=2, alpha=4.0, cap=4)
    mask = dense_pattern_mask(T, sel.pos, sel.valid, chunk_size=8, window=8)
    assert mask.sum(-1).max() < T / 2  # the pattern is sparse here
    probs = torch.softmax(logits.masked_fill(~mask[:, None], -torch.inf), -1)
    ref = attn.out_proj(torch.einsum("bhij,bjhd->bihd", probs, v).flatten(2))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_attention_cache_equals_one_pass():
    attn = make_attention()
    T = 72
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, T, 32, generator=g, dtype=torch.float64)
    scan = torch.randn(1, T, 48, generator=g, dtype=torch.float64)
    norm, change = torch.rand(1, T, 3, generator=g), torch.rand(1, T, 3, generator=g)
    full = attn(x, scan, norm, change)
    cache, outs = None, []
    for a, b in ((0, 16), (16, 24), (24, 64), (64, 72)):
        o, cache = attn(x[:, a:b], scan[:, a:b], norm[:, a:b], change[:, a:b], cache=cache, return_cache=True)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-10, atol=1e-12)
    assert cache.pos == T and cache.k.shape[1] == 16 and cache.pool_k.shape[1] == 4


def test_fusion_gate_is_input_conditioned_mix():
    gate = FusionGate(4)
    x, a, b = torch.randn(3, 2, 5, 4).unbind(0)
    g = gate.gate(x)
    torch.testing.assert_close(gate(x, a, b), g * a + (1 - g) * b)
    assert g.std() > 0  # varies with the input
    with torch.no_grad():
        gate.proj.weight.zero_()
    torch.testing.assert_close(gate.gate(x), torch.full_like(x, 0.5))  # zero bias: an even mix


def test_norms_and_mlp():
    x = torch.randn(3, 7, 16)
    y = RMSNorm(16)(x)
    torch.testing.assert_close(y.square().mean(-1), torch.ones(3, 7), rtol=1e-4, atol=1e-4)
    z = torch.randn(3, 7, 16)
    torch.testing.assert_close(RMSNormGated(16)(x, z), RMSNorm(16)(x * torch.nn.functional.silu(z)))
    assert SwiGLU(16, 2.0)(x).shape == x.shape


def test_projections_keep_the_autocast_dtype():
    """Under bf16 autocast the fp32 bias parameter lam must not promote the folded k to fp32: the
    Triton attention would take its fp32 path (on an H200 it made embed 10x slower). The key
    bias stays fp32 (it shifts logits)."""
    attn = ScanSparseAttention(32, 48, 2, 8, summary_dim=6, window=8, chunk_size=8, topk_base=2,
                               topk_alpha=4.0, topk_cap=4, causal=True, bias_init=0.3)
    x, scan = torch.randn(1, 16, 32), torch.randn(1, 16, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v, kb = attn._project(x, scan)
    assert q.dtype == k.dtype == v.dtype == torch.bfloat16 and kb.dtype == torch.float32
    q32, k32, _, kb32 = attn._project(x, scan)  # no autocast: fp32 throughout, the same numbers to bf16 precision
    assert q32.dtype == torch.float32
    torch.testing.assert_close(q.float(), q32, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(k.float(), k32, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(kb, kb32, rtol=5e-2, atol=5e-2)
