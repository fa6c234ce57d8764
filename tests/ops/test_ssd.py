"""Chunked SSD against the step-by-step recurrence: outputs, final state, every gradient, and
the in-scan importance against brute-force state norms."""
import pytest
import torch

from genossa.ops.ssd import ssd, ssd_chunked, ssd_recurrent

# relative error ||a - b|| / ||b||; fp32 allows for reassociation over ~200 steps
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}



def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make_inputs(T, dtype, *, batch=2, heads=4, headdim=3, groups=2, dstate=5, seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return dict(
        x=randn(batch, T, heads, headdim),
        dt=torch.rand(batch, T, heads, generator=g, dtype=dtype) * 0.5 + 0.01,
        A=-(torch.rand(heads, generator=g, dtype=dtype) * 2 + 0.1),
        B=randn(batch, T, groups, dstate),
        C=randn(batch, T, groups, dstate),
        D=randn(heads),
        z=randn(batch, T, heads, headdim),
        initial_state=randn(batch, heads, headdim, dstate),
    )


CASES = [(1, 4), (63, 16), (63, 7), (200, 48), (200, 64)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T,chunk", CASES)
def test_chunked_forward_matches_recurrence(T, chunk, dtype):
    inp = make_inputs(T, dtype)
    y_ref, h_ref, _ = ssd_recurrent(**inp)
    y, h, _ = ssd_chunked(**inp, chunk_size=chunk)
    assert y.dtype == dtype and y.shape == inp["x"].shape
    assert rel(y, y_ref) < TOL[dtype]
    assert rel(h, h_ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T,chunk", [(1, 4), (63, 7), (200, 48)])
def test_chunked_gradients_match_recurrence(T, chunk, dtype):
    inp = make_inputs(T, dtype, seed=1)
    names = list(inp)
    g = torch.Generator().manual_seed(2)
    dy = torch.randn(inp["x"].shape, generator=g, dtype=dtype)
    dh = torch.randn(inp["initial_state"].shape, generator=g, dtype=dtype)

    def grads(fn, **kw):
        leaves = {n: t.clone().requires_grad_(True) for n, t in inp.items()}
        y, h, _ = fn(**leaves, **kw)
        ((y * dy).sum() + (h * dh).sum()).backward()
        return {n: leaves[n].grad for n in names}

    ref = grads(ssd_recurrent)
    got = grads(ssd_chunked, chunk_size=chunk)
    for n in names:
        assert got[n] is not None and torch.isfinite(got[n]).all(), n
        assert rel(got[n], ref[n]) < TOL[dtype], (n, rel(got[n], ref[n]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_initial", [True, False])
@pytest.mark.parametrize("T,chunk", [(1, 4), (63, 16), (200, 48)])
def test_importance_matches_brute_force(T, chunk, dtype, with_initial):
    inp = make_inputs(T, dtype, seed=3)
    if not with_initial:
        inp["initial_state"] = None
    _, _, ref = ssd_recurrent(**inp, return_importance=True)
    _, _, imp = ssd_chunked(**inp, chunk_size=chunk, return_importance=True)
    assert imp.norm.shape == (2, T, 4)
    tol = {torch.float64: 1e-10, torch.float32: 1e-5}[dtype]
    assert rel(imp.norm, ref.norm) < tol
    assert rel(imp.change, ref.change) < tol
    assert rel(imp.score, ref.norm + ref.change) < tol
    if not with_initial:  # h_{-1} = 0, so the first change is the first state
        torch.testing.assert_close(imp.change[:, 0], imp.norm[:, 0])
    assert not imp.norm.requires_grad


def test_importance_long_memory_and_fast_decay_fp32():
    """Tiny dt * |A| (memory ~4096: expm1 matters) and large dt * |A| (a_t ~ e^-30)."""
    inp = make_inputs(130, torch.float64, seed=4)
    inp["dt"] = torch.cat([inp["dt"][..., :2] * 1e-3, inp["dt"][..., 2:] * 40], dim=-1)
    _, _, ref = ssd_recurrent(**inp, return_importance=True)
    inp32 = {n: t.float() for n, t in inp.items()}
    _, _, imp = ssd_chunked(**inp32, chunk_size=32, return_importance=True)
    assert rel(imp.norm.double(), ref.norm) < 1e-5
    assert rel(imp.change.double(), ref.change) < 1e-5


def test_streaming_with_state_equals_one_pass():
    inp = make_inputs(100, torch.float64, seed=5)
    y_all, h_all, imp_all = ssd_chunked(**inp, chunk_size=16, return_importance=True)
    first = {n: (t[:, :37] if t.dim() >= 3 and t.shape[1] == 100 else t) for n, t in inp.items()}
    rest = {n: (t[:, 37:] if t.dim() >= 3 and t.shape[1] == 100 else t) for n, t in inp.items()}
    y1, h1, imp1 = ssd_chunked(**first, chunk_size=16, return_importance=True)
    rest["initial_state"] = h1
    y2, h2, imp2 = ssd_chunked(**rest, chunk_size=16, return_importance=True)
    assert rel(torch.cat([y1, y2], 1), y_all) < 1e-12
    assert rel(h2, h_all) < 1e-12
    assert rel(torch.cat([imp1.score, imp2.score], 1), imp_all.score) < 1e-12


def test_public_op_flags_and_validation():
    inp = make_inputs(20, torch.float32)
    y = ssd(**inp, chunk_size=8)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 20, 4, 3)
    y2, h = ssd(**inp, chunk_size=8, return_final_state=True)
    assert torch.equal(y, y2) and h.shape == (2, 4, 3, 5)
    y3, imp = ssd(**inp, chunk_size=8, return_importance=True)
    assert imp.score.shape == (2, 20, 4) and (imp.score > 0).all()
    y4, h4, imp4 = ssd(**inp, chunk_size=8, return_final_state=True, return_importance=True)
    assert torch.equal(h4, h) and torch.equal(imp4.norm, imp.norm)
    with pytest.raises(ValueError, match="unknown impl 'cuda'"):
        ssd(**inp, chunk_size=8, impl="cuda")
    y5 = ssd(**inp, chunk_size=8, impl="triton")  # the interpreter on CPU (tests/conftest.py)
    assert ((y5 - y).norm() / y.norm()).item() < 1e-5
    with pytest.raises(ValueError, match="dt must be"):
        ssd(**{**inp, "dt": inp["dt"][:, :5]}, chunk_size=8)
    with pytest.raises(ValueError, match="initial_state"):
        ssd(**{**inp, "initial_state": inp["initial_state"][:1]}, chunk_size=8)


def test_half_inputs_compute_in_fp32():
    inp = make_inputs(40, torch.float32, seed=6)
    ref, _, _ = ssd_recurrent(**inp)
    y = ssd(**{n: t.to(torch.bfloat16) for n, t in inp.items()}, chunk_size=16)
    assert y.dtype == torch.bfloat16
    assert rel(y.float(), ref) < 3e-2  # bf16 inputs: ~8 bits of mantissa
