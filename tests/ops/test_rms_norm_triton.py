"""The fused (gated) RMSNorm kernels against the PyTorch Function (`rms_norm(..., impl="naive")`)
and the plain expression `rms_norm_reference`: output and the gradients of x, weight and z, on
the CPU through the Triton interpreter (fp32, fp16) and, marked gpu, on CUDA (bf16, fp32).

Relative error ||a - b|| / ||b||: fp32 1e-5; fp16 outputs and gradients are roundings of the
same fp32 arithmetic (a sum order apart): 2e-3; bf16 (GPU): 1e-2.
"""
import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels, rel

rms_mod = import_kernels("genossa.kernels.rms_norm", "_rms_norm_fwd_kernel")

from genossa.modules.norms import RMSNormGated, rms_norm, rms_norm_reference  # noqa: E402

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def case(shape, dtype, gated, *, seed=0, strided_z=False):
    """x, weight, z (a split of a wider projection with strided_z, as in the mixer) and dy."""
    g = torch.Generator().manual_seed(seed)
    D = shape[-1]
    x = torch.randn(*shape, generator=g)
    w = 1 + 0.2 * torch.randn(D, generator=g)
    z = None
    if gated:
        wide = torch.randn(*shape[:-1], D + 5, generator=g) * 2
        z = wide[..., 3 : 3 + D] if strided_z else wide[..., :D].contiguous()
    dy = torch.randn(*shape, generator=g)
    to = dict(device=DEVICE, dtype=dtype)
    return x.to(**to), w.to(**to), None if z is None else z.to(**to), dy.to(**to)


def grads(impl, x, w, z, dy):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w) + ((z,) if z is not None else ())]
    zz = leaves[2] if z is not None else None
    if impl == "reference":
        out = rms_norm_reference(leaves[0], leaves[1], 1e-5, zz)
    else:
        out = rms_norm(leaves[0], leaves[1], 1e-5, zz, impl=impl)
    return out, torch.autograd.grad(out, leaves, dy)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 5), (2, 37, 48), (3, 11, 130)])
def test_matches_the_pytorch_function(shape, gated, dtype):
    x, w, z, dy = case(shape, dtype, gated)
    out, got = grads("triton", x, w, z, dy)
    ref, want = grads("naive", x, w, z, dy)
    assert out.dtype == dtype and out.shape == ref.shape
    assert rel(out, ref) < TOL[dtype]
    for name, a, b in zip(("x", "weight", "z"), got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert rel(a, b) < TOL[dtype], (name, rel(a, b))


def test_strided_gate_many_programs_and_the_plain_expression():
    """z read in place from a wider projection (row stride D + 5); the backward's partial weight
    gradients summed over several programs; all equal the plain expression's autograd."""
    x, w, z, dy = case((4, 50, 24), torch.float32, True, seed=3, strided_z=True)
    assert z.stride(-2) == 29
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, z)]
    y, rstd = rms_mod.rms_norm_fwd(leaves[0].reshape(-1, 24), leaves[1], leaves[2].reshape(-1, 24), 1e-5)
    dx, dw, dz = rms_mod.rms_norm_bwd(dy.reshape(-1, 24), leaves[0].reshape(-1, 24), leaves[1],
                                      leaves[2].reshape(-1, 24), rstd, programs=7)
    ref = rms_norm_reference(*leaves[:2], 1e-5, leaves[2])
    want = torch.autograd.grad(ref, leaves, dy)
    assert rel(y.view(ref.shape), ref) < 1e-6
    for a, b in zip((dx.view(x.shape), dw, dz.view(z.shape)), want):
        assert rel(a, b) < 1e-5


def test_module_uses_the_kernel():
    """RMSNormGated(impl='triton') runs the fused Function (what `kernels: auto` gives on CUDA)."""
    x, w, z, dy = case((2, 9, 16), torch.float32, True, seed=4)
    module = RMSNormGated(16, impl="triton").to(DEVICE)
    y = module(x, z)
    assert type(y.grad_fn).__name__ == "_RMSNormTritonBackward"
    assert rel(y, rms_norm_reference(x, module.weight, module.eps, z)) < 1e-6


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("gated", [False, True])
def test_gpu_matches_the_pytorch_function(dtype, gated):
    x, w, z, dy = case((2, 4099, 768), dtype, gated, seed=5, strided_z=gated)
    out, got = grads("triton", x, w, z, dy)
    ref, want = grads("naive", x, w, z, dy)
    assert rel(out, ref) < TOL[dtype]
    for name, a, b in zip(("x", "weight", "z"), got, want):
        assert rel(a, b) < TOL[dtype], (name, rel(a, b))
