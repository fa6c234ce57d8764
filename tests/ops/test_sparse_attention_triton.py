"""Triton sparse attention against the PyTorch reference `naive_sparse_attention`: output, log-sum-exp
and every gradient (q, k, v, sel_k, sel_v; indexed layout: q, k, v), on the CPU through the
Triton interpreter (fp32, fp16) and, marked gpu, on CUDA (fp32, bf16).

Relative error ||a - b|| / ||b||. Tolerances: fp32 1e-5 forward / 1e-4 gradients (fp32
reassociation over the online softmax and the key loops); fp16 inputs feed fp16 tiles to the
dots (P and dS are rounded to fp16 before their products, as on tensor cores) while the
reference computes in fp32 from the same fp16 inputs: 1e-2. bf16 (GPU): 2e-2 / 3e-2 (8-bit
mantissa roundings of P and dS).
"""
import math

import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels, rel

fwd_mod = import_kernels("genossa.kernels.sparse_attention_fwd", "_sparse_attn_fwd_kernel")

from genossa.ops.sparse_attention import (  # noqa: E402
    fold_scan_bias,
    gather_selected,
    naive_sparse_attention,
    select_bidirectional,
    select_causal,
)
from genossa.ops.sparse_attention import triton as sat  # noqa: E402

FWD_TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(fwd_mod, "POISON_OUTPUTS", True)


def make_case(Tq, *, dtype, chunk, window, n_sel, causal=True, q_start=0, k_start=0, n_keys=None, B=2, H=2,
              Dk=16, Dv=24, seed=0, device=DEVICE, p_valid=0.8):
    """Random q, k, v, a selection list with repeats, invalid and out-of-pattern entries."""
    g = torch.Generator().manual_seed(seed)
    if n_keys is None:
        n_keys = q_start + Tq - k_start if causal else q_start + Tq + window + chunk - k_start
    NC = -(-Tq // chunk)
    q = torch.randn(B, Tq, H, Dk, generator=g)
    k = torch.randn(B, n_keys, H, Dk, generator=g)
    v = torch.randn(B, n_keys, H, Dv, generator=g)
    # positions anywhere in the keys (in the span, after the query, ...), some -1 or repeated
    pos = torch.randint(k_start, k_start + n_keys, (B, NC, n_sel), generator=g)
    pos[torch.rand(B, NC, n_sel, generator=g) < 0.1] = -1
    pos[..., -1] = pos[..., 0]
    valid = torch.rand(B, NC, n_sel, generator=g) < p_valid
    to = dict(device=device, dtype=dtype)
    return q.to(**to), k.to(**to), v.to(**to), pos.to(device), valid.to(device)


def run(impl, q, k, v, kb, pos, valid, dout, **kw):
    """Output and gradients (q, k, v, key_bias[, sel_k, sel_v, sel_bias]) of one implementation."""
    q, k, v, kb = (t.detach().clone().requires_grad_() for t in (q, k, v, kb))
    k_start = kw.get("k_start", 0)
    if impl == "indexed":
        out = sat.sparse_attention_indexed(q, k, v, pos, valid, key_bias=kb, **kw)
        return out, torch.autograd.grad(out, (q, k, v, kb), dout)
    if impl == "naive_indexed":  # the gathered keys stay in the graph: their gradients reach k, v, kb
        out = naive_sparse_attention(q, k, v, gather_selected(k, pos, k_start), gather_selected(v, pos, k_start),
                                     pos, valid, key_bias=kb, sel_bias=gather_selected(kb, pos, k_start), **kw)
        return out, torch.autograd.grad(out, (q, k, v, kb), dout)
    sel = [gather_selected(t, pos, k_start).detach().requires_grad_() for t in (k, v, kb)]
    fn = sat.sparse_attention_triton if impl == "triton" else naive_sparse_attention
    out = fn(q, k, v, sel[0], sel[1], pos, valid, key_bias=kb, sel_bias=sel[2], **kw)
    return out, torch.autograd.grad(out, (q, k, v, kb, *sel), dout)


def check(q, k, v, pos, valid, *, dtype, layouts=("triton", "indexed"), **kw):
    """Both layouts against the reference, with a random fp32 key bias (the scan bias's role)."""
    g = torch.Generator().manual_seed(123)
    dout = torch.randn(*q.shape[:3], v.shape[-1], generator=g).to(q.device, q.dtype)
    kb = torch.randn(*k.shape[:3], generator=g).to(q.device)
    for layout in layouts:
        ref_impl = "naive" if layout == "triton" else "naive_indexed"
        ref_out, ref_grads = run(ref_impl, q, k, v, kb, pos, valid, dout, **kw)
        out, grads = run(layout, q, k, v, kb, pos, valid, dout, **kw)
        assert out.dtype == q.dtype and out.shape == ref_out.shape
        assert rel(out, ref_out) < FWD_TOL[dtype], (layout, "out", rel(out, ref_out))
        names = ("q", "k", "v", "key_bias", "sel_k", "sel_v", "sel_bias")
        assert len(grads) == len(ref_grads)
        for name, a, b in zip(names, grads, ref_grads):
            assert a.dtype == b.dtype and a.shape == b.shape, (layout, name)
            assert torch.isfinite(a).all(), (layout, name)
            if b.double().norm() < 1e-5:  # zero in exact arithmetic (T = 1: one key per query)
                assert (a - b).abs().max() < 1e-5, (layout, name)
            else:
                assert rel(a, b) < GRAD_TOL[dtype], (layout, name, rel(a, b))



def cpu(*tensors):
    return tuple(t.cpu() for t in tensors)

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,window,n_sel", [(1, 16, 4), (37, 16, 6), (100, 32, 8)])
def test_matches_reference(T, window, n_sel, causal, dtype):
    q, k, v, pos, valid = make_case(T, dtype=dtype, chunk=16, window=window, n_sel=n_sel, causal=causal)
    check(q, k, v, pos, valid, dtype=dtype, chunk_size=16, window=window, causal=causal)


def test_log_sum_exp_and_padding_rows():
    """The saved lse equals the reference's; padding rows of the last chunk hold +inf (P = 0)."""
    T, C, W = 37, 16, 16
    q, k, v, pos, valid = make_case(T, dtype=torch.float32, chunk=C, window=W, n_sel=6)
    kw = dict(chunk_size=C, window=W, causal=True, q_start=0, k_start=0)
    _, ref_lse = naive_sparse_attention(q, k, v, gather_selected(k, pos), gather_selected(v, pos), pos, valid,
                                        return_lse=True, **kw)
    use = sat.usable_selection(pos, valid, q_start=0, chunk_size=C, window=W, causal=True)
    rows, cnt = sat.compact_selection(use, pos, indexed=True, k_start=0)
    kb = torch.zeros(k.shape[:3])
    _, lse2 = fwd_mod.sparse_attention_fwd(q, k, v, kb, None, None, None, rows, cnt, scale=1 / 4, **kw)
    lse = lse2.view(2, 2, -1).permute(0, 2, 1) * math.log(2)  # [B, NC*C, H], natural log
    assert rel(lse[:, :T], ref_lse) < 1e-6
    assert torch.isinf(lse[:, T:]).all() and (lse[:, T:] > 0).all()


@pytest.mark.parametrize("causal", [True, False])
def test_offsets_streaming(causal):
    """A later call: queries from q_start, keys from k_start = q_start - window (the cache)."""
    C, W, Tq = 16, 16, 40
    q_start, k_start = 48, 32
    q, k, v, pos, valid = make_case(Tq, dtype=torch.float32, chunk=C, window=W, n_sel=6, causal=causal,
                                    q_start=q_start, k_start=k_start, seed=3)
    check(q, k, v, pos, valid, dtype=torch.float32, chunk_size=C, window=W, causal=causal, q_start=q_start,
          k_start=k_start)


def test_selected_before_the_keys_gathered_only():
    """Pooled keys before k_start exist only in gathered form; the indexed layout refuses them."""
    C, W, Tq, q_start, k_start = 16, 16, 32, 64, 48
    q, k, v, _, valid = make_case(Tq, dtype=torch.float32, chunk=C, window=W, n_sel=5, q_start=q_start,
                                  k_start=k_start, seed=4)
    g = torch.Generator().manual_seed(5)
    pos = torch.randint(0, k_start, (2, 2, 5), generator=g)  # all before the keys
    sel_k = torch.randn(2, 2, 5, 2, 16, generator=g)
    sel_v = torch.randn(2, 2, 5, 2, 24, generator=g)
    kw = dict(chunk_size=C, window=W, q_start=q_start, k_start=k_start)
    dout = torch.randn(2, Tq, 2, 24, generator=g)
    results = []
    for fn in (naive_sparse_attention, sat.sparse_attention_triton):
        ins = [t.clone().requires_grad_() for t in (q, k, v, sel_k, sel_v)]
        out = fn(*ins[:3], *ins[3:], pos, valid, **kw)
        results.append((out, torch.autograd.grad(out, ins, dout)))
    (ref, ref_g), (out, out_g) = results
    assert rel(out, ref) < 1e-5
    for a, b in zip(out_g, ref_g):
        assert rel(a, b) < 1e-4
    with pytest.raises(ValueError, match="outside the keys"):  # on the CPU: a GPU asserts on the device instead
        sat.sparse_attention_indexed(*cpu(q, k, v, pos, torch.ones_like(valid)), **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_indexed_with_a_pool_equals_gathered(dtype):
    """A stream's later piece: selected keys both from the cache's pool (positions before k_start,
    any order in the pool) and from k. The indexed layout reads them by row from [pool; k]: the
    output and the gradients of q, k, v and the pooled keys equal the gathered reference's."""
    C, W, Tq, q_start, k_start, B, H = 16, 16, 40, 64, 48, 2, 2
    q, k, v, pos, valid = make_case(Tq, dtype=dtype, chunk=C, window=W, n_sel=8, q_start=q_start,
                                    k_start=k_start, seed=6, B=B, H=H)
    g = torch.Generator().manual_seed(7)
    to = dict(device=DEVICE, dtype=dtype)
    early_k = torch.randn(B, k_start, H, 16, generator=g).to(**to)  # keys at positions [0, k_start)
    early_v = torch.randn(B, k_start, H, 24, generator=g).to(**to)
    kb, early_b = torch.randn(B, k.shape[1], H, generator=g), torch.randn(B, k_start, H, generator=g)
    pos[..., ::2] = torch.randint(0, k_start, pos[..., ::2].shape, generator=g).to(DEVICE)  # half before the keys
    pool_pos = torch.stack([torch.randperm(k_start, generator=g) for _ in range(B)]).to(DEVICE)  # shuffled pool
    kw = dict(chunk_size=C, window=W, q_start=q_start, k_start=k_start, scale=0.25)
    dout = torch.randn(B, Tq, H, 24, generator=g).to(**to)
    leaves = (q, k, v, early_k, early_v, kb.to(DEVICE), early_b.to(DEVICE))
    ins = [t.clone().requires_grad_() for t in leaves]
    all_k, all_v, all_b = (torch.cat([ins[i], ins[j]], 1) for i, j in ((3, 1), (4, 2), (6, 5)))
    ref = naive_sparse_attention(ins[0].float(), ins[1].float(), ins[2].float(), gather_selected(all_k, pos).float(),
                                 gather_selected(all_v, pos).float(), pos, valid, key_bias=ins[5],
                                 sel_bias=gather_selected(all_b, pos), **kw)
    ref_g = torch.autograd.grad(ref, ins, dout.float())
    ins = [t.clone().requires_grad_() for t in leaves]
    take = pool_pos[..., None, None]
    pool_k = ins[3].gather(1, take.expand(-1, -1, H, 16))
    pool_v = ins[4].gather(1, take.expand(-1, -1, H, 24))
    pool_b = ins[6].gather(1, pool_pos[..., None].expand(-1, -1, H))
    out = sat.sparse_attention_indexed(*ins[:3], pos, valid, key_bias=ins[5], pool_k=pool_k, pool_v=pool_v,
                                       pool_bias=pool_b, pool_pos=pool_pos, **kw)
    out_g = torch.autograd.grad(out, ins, dout)
    assert rel(out, ref) < FWD_TOL[dtype]
    for name, a, b in zip(("q", "k", "v", "pool_k", "pool_v", "key_bias", "pool_bias"), out_g, ref_g):
        assert b.norm() > 0, name
        assert rel(a, b) < GRAD_TOL[dtype], (name, rel(a, b))
    pool_pos[pool_pos == pos[0, 0, 0]] = k_start + 100  # a selected position missing from the pool is refused
    q, k, v, pos, valid, kb, pool_k, pool_v, pool_b, pool_pos = cpu(
        q, k, v, pos, torch.ones_like(valid), kb, pool_k.detach(), pool_v.detach(), pool_b.detach(), pool_pos)
    with pytest.raises(ValueError, match="outside the keys"):  # on the CPU: a GPU asserts on the device instead
        sat.sparse_attention_indexed(q, k, v, pos, valid, key_bias=kb, pool_k=pool_k, pool_v=pool_v,
                                     pool_bias=pool_b, pool_pos=pool_pos, **kw)


@pytest.mark.parametrize("chunk,window,block_m,block_n,cap", [(24, 20, 64, 16, None), (16, 24, 32, 32, 128),
                                                             (32, 16, 16, 16, None), (16, 48, 16, 16, None)])
def test_tile_shapes(monkeypatch, chunk, window, block_m, block_n, cap):
    """Chunks that no power-of-two tile divides (rows masked), tiles larger than the chunk,
    windows that are no multiple of the tiles, and several query tiles per chunk; launch
    settings with a register cap (a fifth entry: the interpreter ignores it, GPUs spill)."""
    cfg = {name: (block_m, block_n, 4, 1) + ((cap,) if cap else ()) for name in ("fwd", "dq", "dkv", "sel")}
    monkeypatch.setattr(sat, "FP32_CONFIG", cfg)
    for causal in (True, False):
        q, k, v, pos, valid = make_case(70, dtype=torch.float32, chunk=chunk, window=window, n_sel=7,
                                        causal=causal, seed=6, B=1)
        check(q, k, v, pos, valid, dtype=torch.float32, chunk_size=chunk, window=window, causal=causal)


@pytest.mark.parametrize("chunk,block_m,block_n", [(16, 16, 16), (64, 64, 128)])
def test_several_selected_tiles(monkeypatch, chunk, block_m, block_n):
    """Lists of several key tiles: the selected-key loops run several iterations (the dq kernel
    carries its row indices a tile ahead across them)."""
    cfg = {name: (block_m, block_n, 4, 1) for name in ("fwd", "dq", "dkv", "sel")}
    monkeypatch.setattr(sat, "FP32_CONFIG", cfg)
    n_sel = 3 * block_n  # ~2 tiles usable: most positions precede the chunks' spans
    q, k, v, pos, valid = make_case(2 * chunk, dtype=torch.float32, chunk=chunk, window=16, n_sel=n_sel,
                                    q_start=4 * n_sel, seed=8, B=1, H=1)
    use = sat.usable_selection(pos, valid, q_start=4 * n_sel, chunk_size=chunk, window=16, causal=True)
    assert (use.sum(-1) > block_n).all()
    check(q, k, v, pos, valid, dtype=torch.float32, chunk_size=chunk, window=16, causal=True, q_start=4 * n_sel)


def test_folded_scan_bias_and_real_selection():
    """The module's use: keys folded with the scan bias (scale 1, a per-key bias), selections from
    select_causal / select_bidirectional; the folded attention equals the reference's logits
    built from the unfolded terms."""
    g = torch.Generator().manual_seed(7)
    B, T, H, D, C, W = 1, 64, 2, 8, 16, 16
    q, k, ws, wks = (torch.randn(B, T, H, D, generator=g) for _ in range(4))
    v = torch.randn(B, T, H, D, generator=g)
    lam, mu = torch.rand(H, generator=g), torch.rand(H, generator=g)
    qf, kf, kb = fold_scan_bias(q, k, ws, wks, lam, mu, scale=1 / math.sqrt(D))
    imp, comp = torch.randn(B, T, generator=g), torch.rand(B, T, generator=g)
    sel_args = dict(chunk_size=C, window=W, base=3, alpha=4.0, cap=6)
    sel_c, _ = select_causal(imp, comp, q_start=0, n_queries=T, **sel_args)
    sel_b = select_bidirectional(imp, comp, **sel_args)
    for causal, sel in ((True, sel_c), (False, sel_b)):
        kw = dict(chunk_size=C, window=W, causal=causal)
        out = sat.sparse_attention_indexed(qf, kf, v, sel.pos, sel.valid, scale=1.0, key_bias=kb, **kw)
        # the same logits from the unfolded terms: the DESIGN.md widened form, scale 1
        qw = torch.cat([q / math.sqrt(D), lam[:, None] * q, torch.ones(B, T, H, 1)], -1)
        kw_ = torch.cat([k, ws, kb[..., None]], -1)
        ref = naive_sparse_attention(qw, kw_, v, gather_selected(kw_, sel.pos), gather_selected(v, sel.pos),
                                     sel.pos, sel.valid, scale=1.0, **kw)
        assert rel(out, ref) < 1e-5


def test_usable_selection_rules():
    """Valid, >= 0, outside the span, not after the chunk (causal), first of repeats."""
    pos = torch.tensor([[[3, 3, -1, 40, 14, 5, 3]] * 2])
    valid = torch.tensor([[[True, True, True, True, True, False, True]] * 2])
    kw = dict(q_start=16, chunk_size=8, window=4)  # chunks at 16 and 24
    use_c = sat.usable_selection(pos, valid, causal=True, **kw)  # keys before 12, before 20
    assert use_c.tolist() == [[[True, False, False, False, False, False, False],
                               [True, False, False, False, True, False, False]]]
    use_b = sat.usable_selection(pos, valid, causal=False, **kw)  # outside [12, 28), [20, 36)
    assert use_b.tolist() == [[[True, False, False, True, False, False, False],
                               [True, False, False, True, True, False, False]]]
    rows, cnt = sat.compact_selection(use_b, pos, indexed=False, k_start=0)
    assert cnt.tolist() == [[2, 3]] and rows[0, 1, :3].tolist() == [0, 3, 4]


def test_distinct_selections_skip_deduplication():
    """select_causal's and select_bidirectional's lists hold distinct positions (streamed in pieces
    too), so distinct=True, which skips the de-duplication sort, marks the same entries usable."""
    g = torch.Generator().manual_seed(11)
    B, T, C, W = 2, 96, 8, 8
    imp, comp = torch.randn(B, T, generator=g), torch.rand(B, T, generator=g)
    imp[:, 40:60] = imp[:, 40:41]  # ties
    sel_args = dict(chunk_size=C, window=W, base=5, alpha=2.0, cap=12)
    first, state = select_causal(imp, comp, q_start=0, n_queries=48, **sel_args)
    second, _ = select_causal(imp, comp, q_start=48, n_queries=48, state=state, **sel_args)
    cases = [(first, 0, True), (second, 48, True), (select_bidirectional(imp, comp, **sel_args), 0, False)]
    for sel, q_start, causal in cases:
        kw = dict(q_start=q_start, chunk_size=C, window=W, causal=causal)
        use = sat.usable_selection(sel.pos, sel.valid, **kw)
        assert use.any() and torch.equal(sat.usable_selection(sel.pos, sel.valid, distinct=True, **kw), use)


def test_argument_errors():
    q, k, v, pos, valid = make_case(20, dtype=torch.float32, chunk=16, window=16, n_sel=4)
    sk, sv = gather_selected(k, pos), gather_selected(v, pos)
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        sat.sparse_attention_triton(q, k, v, sk, sv, pos, valid, chunk_size=16, window=16, q_start=8)
    with pytest.raises(ValueError, match="do not cover"):
        sat.sparse_attention_triton(q, k[:, :10], v[:, :10], sk, sv, pos, valid, chunk_size=16, window=16)
    with pytest.raises(ValueError, match="NC=2"):
        sat.sparse_attention_indexed(q, k, v, pos[:, :1], valid[:, :1], chunk_size=16, window=16)
    empty = sat.sparse_attention_triton(q[:, :0], k, v, sk[:, :0], sv[:, :0], pos[:, :0], valid[:, :0],
                                        chunk_size=16, window=16)
    assert empty.shape == (2, 0, 2, 24)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
def test_gpu_matches_reference(dtype, causal):
    T, C, W = 1000, 64, 128
    q, k, v, pos, valid = make_case(T, dtype=dtype, chunk=C, window=W, n_sel=96, causal=causal, B=1, H=4,
                                    Dk=64, Dv=64, device="cuda")
    check(q, k, v, pos, valid, dtype=dtype, chunk_size=C, window=W, causal=causal)


@pytest.mark.gpu
@gpu
def test_gpu_folded_bias_head_dim_64():
    """The module's shape: head dim 64 with the scan bias as a per-key term, bf16, default launch configs."""
    T, C, W = 777, 128, 256
    q, k, v, pos, valid = make_case(T, dtype=torch.bfloat16, chunk=C, window=W, n_sel=200, B=1, H=2, Dk=64,
                                    Dv=64, device="cuda")
    check(q, k, v, pos, valid, dtype=torch.bfloat16, chunk_size=C, window=W, causal=True, scale=1.0)
