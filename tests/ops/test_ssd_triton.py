"""Triton SSD kernels against the chunked PyTorch reference (`ssd_chunked`): outputs, final
state, importance and every gradient, on the CPU through the Triton interpreter (fp32, fp16)
and, marked gpu, on CUDA (fp32, bf16).

Relative error ||a - b|| / ||b||. Tolerances: fp32 1e-5 forward / 1e-4 gradients (fp32
reassociation over a few hundred steps; the decay gradient sums signed terms over the chunk);
fp16 inputs feed fp16 tiles to the dots (as on a GPU's tensor cores) while the reference
computes in fp32 from the same fp16 inputs, so 1e-2 (a few fp16 roundings of intermediates).
"""
import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels, rel

ssd_fwd_mod = import_kernels("genossa.kernels.ssd_fwd", "_chunk_scan_fwd_kernel")

from genossa.ops.ssd.naive import ssd_chunked  # noqa: E402
from genossa.ops.ssd import triton as ssd_triton_mod  # noqa: E402

FWD_TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}
NAMES = ("x", "dt", "A", "B", "C", "D", "z", "initial_state")


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(ssd_fwd_mod, "POISON_OUTPUTS", True)


def make_inputs(T, dtype, *, batch=2, heads=4, headdim=16, groups=2, dstate=16, seed=0,
                with_D=True, with_z=True, with_initial=True, device=DEVICE):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    inp = dict(
        x=randn(batch, T, heads, headdim),
        dt=(torch.rand(batch, T, heads, generator=g) * 0.5 + 0.01).to(device=device, dtype=dtype),
        A=-(torch.rand(heads, generator=g) * 2 + 0.1).to(device),
        B=randn(batch, T, groups, dstate, scale=dstate**-0.5),
        C=randn(batch, T, groups, dstate, scale=dstate**-0.5),
        D=randn(heads).float() if with_D else None,
        z=randn(batch, T, heads, headdim) if with_z else None,
        initial_state=randn(batch, heads, headdim, dstate).float() if with_initial else None,
    )
    return inp


def run(fn, inp, chunk, *, cot=None, importance=True):
    """Forward (y, final, importance) and, with cotangents, the gradients of every input."""
    leaves = {n: (t.clone().requires_grad_(cot is not None) if t is not None else None) for n, t in inp.items()}
    if fn is ssd_chunked:
        y, final, imp = ssd_chunked(**leaves, chunk_size=chunk, return_importance=importance)
    else:
        y, final, imp = fn(**leaves, chunk_size=chunk, return_final_state=True, return_importance=True)
    grads = None
    if cot is not None:
        dy, dfinal = cot
        loss = (y.float() * dy).sum() + (final * dfinal).sum() if dfinal is not None else (y.float() * dy).sum()
        loss.backward()
        grads = {n: t.grad for n, t in leaves.items() if t is not None}
    return y.detach(), final.detach(), imp, grads


def reference(inp, chunk, **kw):
    """The fp32 reference on the same (possibly half-precision) inputs."""
    up = {n: (t.float() if t is not None else None) for n, t in inp.items()}
    return run(ssd_chunked, up, chunk, **kw)


def check_forward(inp, chunk, dtype):
    y, final, imp, _ = run(ssd_triton_mod.ssd_triton, inp, chunk)
    y_ref, final_ref, imp_ref, _ = reference(inp, chunk)
    assert y.dtype == inp["x"].dtype and y.shape == inp["x"].shape
    assert final.dtype == torch.float32 and imp.norm.dtype == torch.float32
    for name, a, b in (("y", y, y_ref), ("final", final, final_ref),
                       ("norm", imp.norm, imp_ref.norm), ("change", imp.change, imp_ref.change)):
        assert torch.isfinite(a).all(), name
        assert rel(a, b) < FWD_TOL[dtype], (name, rel(a, b))


def check_gradients(inp, chunk, dtype, *, with_dfinal=True):
    g = torch.Generator().manual_seed(7)
    bsz, T, H, P = inp["x"].shape
    N = inp["B"].shape[-1]
    dy = torch.randn(bsz, T, H, P, generator=g).to(inp["x"].device)
    dfinal = torch.randn(bsz, H, P, N, generator=g).to(inp["x"].device) if with_dfinal else None
    *_, got = run(ssd_triton_mod.ssd_triton, inp, chunk, cot=(dy, dfinal))
    *_, ref = reference(inp, chunk, cot=(dy, dfinal), importance=False)
    for n in got:
        assert got[n] is not None, n
        assert got[n].dtype == inp[n].dtype and got[n].shape == inp[n].shape, n
        assert torch.isfinite(got[n]).all(), n
        assert rel(got[n], ref[n]) < GRAD_TOL[dtype], (n, rel(got[n], ref[n]))


# (T, chunk, options): odd lengths, a partial last chunk, a chunk that is not a power of two,
# one group per head and shared groups, with and without D / z / initial state
FWD_CASES = [
    (1, 32, dict()),
    (63, 32, dict(groups=4, with_D=False, with_z=False, with_initial=False)),
    (63, 24, dict(heads=2, groups=1)),
    (200, 64, dict(batch=1)),
    (300, 16, dict(batch=1, heads=2, groups=1)),  # 19 chunks: state passing over 3 groups, the last partial
]


@pytest.mark.parametrize("T,chunk,opts", FWD_CASES)
def test_forward_fp32(T, chunk, opts):
    check_forward(make_inputs(T, torch.float32, **opts), chunk, torch.float32)


def test_forward_fp16():
    check_forward(make_inputs(63, torch.float16, seed=3), 32, torch.float16)


def test_importance_after_steps_that_wipe_the_state():
    """Steps whose decay dt * A is below -60 (a state reset): exp(acum_t - acum_s) underflows where
    exp(acum_{t-1} - acum_s), the importance's decay, does not; a kernel that derived the one from
    the other (session 8 tried it) would be off by O(1) here."""
    inp = make_inputs(100, torch.float32, seed=13)
    inp["dt"][:, 37] = 50.0  # dt * A from -5 to -105 over the heads
    inp["dt"][:, 70, 1] = 35.0
    check_forward(inp, 32, torch.float32)


def test_importance_does_not_change_outputs():
    inp = make_inputs(63, torch.float32, seed=4)
    y1, f1 = ssd_triton_mod.ssd_triton(**inp, chunk_size=32, return_final_state=True)
    y2, f2, _ = ssd_triton_mod.ssd_triton(**inp, chunk_size=32, return_final_state=True, return_importance=True)
    assert torch.equal(y1, y2) and torch.equal(f1, f2)
    assert torch.is_tensor(ssd_triton_mod.ssd_triton(**inp, chunk_size=32))


GRAD_CASES = [
    (1, 32, dict(), True),
    (63, 32, dict(groups=4, with_D=False, with_z=False, with_initial=False), False),
    (63, 24, dict(heads=2, groups=1), True),
    (200, 64, dict(batch=1), True),
    (300, 16, dict(batch=1, heads=2, groups=1), True),
]


@pytest.mark.parametrize("T,chunk,opts,with_dfinal", GRAD_CASES)
def test_gradients_fp32(T, chunk, opts, with_dfinal):
    check_gradients(make_inputs(T, torch.float32, seed=1, **opts), chunk, torch.float32, with_dfinal=with_dfinal)


def test_gradients_fp16():
    check_gradients(make_inputs(63, torch.float16, seed=5), 32, torch.float16)


def test_empty_sequence():
    inp = make_inputs(0, torch.float32)
    y, final, imp = ssd_triton_mod.ssd_triton(**inp, chunk_size=32, return_final_state=True, return_importance=True)
    assert y.shape == inp["x"].shape and imp.norm.shape == (2, 0, 4)
    assert torch.equal(final, inp["initial_state"])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T", [4000])
def test_gpu_matches_reference(T, dtype):
    opts = dict(batch=1, heads=8, headdim=64, groups=1, dstate=128, seed=11)
    check_forward(make_inputs(T, dtype, **opts), 256, dtype)
    check_gradients(make_inputs(T, dtype, **opts), 256, dtype)


@pytest.mark.parametrize("use_gram", [False, True])
def test_launch_configs_agree(monkeypatch, use_gram):
    """Per-head C B^T (use_gram=False) and 64-position blocks give the reference's results too."""
    cfg = dict(block_l=64 if use_gram else 32, num_warps=4, use_gram=use_gram)
    monkeypatch.setitem(ssd_triton_mod.KERNEL_CONFIG, "fwd", cfg)
    monkeypatch.setitem(ssd_triton_mod.KERNEL_CONFIG, "bwd", cfg)
    inp = make_inputs(100, torch.float32, seed=9, groups=1)
    check_forward(inp, 64, torch.float32)
    check_gradients(inp, 64, torch.float32)


@pytest.mark.parametrize("group_block_l,group_warps", [(64, 4), (16, 2)])
def test_group_kernels_own_block_size(monkeypatch, group_block_l, group_warps):
    """The dB / dC kernels (summed over a group's heads) on blocks of their own size, other than the
    per-head kernel's 32: fp16, two groups of two heads, a chunk of 96 (no power of two)."""
    cfg = dict(block_l=32, num_warps=4, use_gram=True, group_block_l=group_block_l, group_warps=group_warps)
    monkeypatch.setitem(ssd_triton_mod.KERNEL_CONFIG, "bwd", cfg)
    check_gradients(make_inputs(150, torch.float16, seed=12), 96, torch.float16)


def test_scan_reads_low_precision_states_and_grams():
    """The forward scan on half-precision copies of the chunk states and Gram matrices (what bf16
    inputs get on a GPU; fp16 here, the interpreter computes bf16 wrongly) equals the scan on the
    fp32 ones within fp16 tolerance: y, and the importance's norms, which start from ||H_c||^2 of
    the fp32 states either way."""
    inp = make_inputs(300, torch.float16, seed=13)
    args = [inp[n] for n in ("x", "dt", "A", "B", "C", "D", "z")]
    outs = {}
    for scan_dtype in (None, torch.float16):
        y, _, _, final, norm, change, _ = ssd_fwd_mod.ssd_fwd(
            *args, 64, inp["initial_state"], True, block_l=32, num_warps=4, scan_dtype=scan_dtype)
        outs[scan_dtype] = (y, final, norm, change)
    for a, b in zip(outs[torch.float16], outs[None]):
        assert torch.isfinite(a).all()
        assert rel(a, b) < FWD_TOL[torch.float16]
    assert torch.equal(outs[torch.float16][1], outs[None][1])  # the final state stays fp32
