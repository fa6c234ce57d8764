"""The memory-lean norms (`rms_norm`: a custom autograd Function saving only its inputs) equal
the plain expression in forward (bit for bit) and in every gradient, plain and gated."""
import pytest
import torch

from genossa.modules.norms import RMSNorm, RMSNormGated, rms_norm, rms_norm_reference


@pytest.mark.parametrize("gated", [False, True])
def test_fp64_inputs_match_the_reference(gated):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, dtype=torch.float64, generator=g, requires_grad=True)
    w = (1 + 0.1 * torch.randn(7, dtype=torch.float64, generator=g)).requires_grad_()
    z = torch.randn(2, 5, 7, dtype=torch.float64, generator=g, requires_grad=True) if gated else None
    inputs = (x, w, z) if gated else (x, w)
    # the norm's statistics are fp32 by design, so compare with the fp32-statistics reference at
    # fp32 tolerance rather than gradcheck's fp64 finite differences
    out = rms_norm(x, w, 1e-5, z)
    ref = rms_norm_reference(x, w, 1e-5, z)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    dy = torch.randn(out.shape, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(out, inputs, dy)
    want = torch.autograd.grad(ref, inputs, dy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gated", [False, True])
def test_bf16_equals_the_plain_expression(gated):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 64, 48, generator=g).bfloat16().requires_grad_()
    z = torch.randn(3, 64, 48, generator=g).bfloat16().requires_grad_() if gated else None
    module = RMSNormGated(48) if gated else RMSNorm(48)
    with torch.no_grad():
        module.weight.copy_(1 + 0.1 * torch.randn(48, generator=g))
    module = module.bfloat16()
    out = module(x, z) if gated else module(x)
    ref = rms_norm_reference(x, module.weight, module.eps, z)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # the same fp32 arithmetic, bit for bit
    dy = torch.randn(out.shape, generator=g).bfloat16()
    inputs = (x, module.weight, z) if gated else (x, module.weight)
    got = torch.autograd.grad(out, inputs, dy)
    want = torch.autograd.grad(ref, inputs, dy)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)  # bf16 rounding of fp32 grads


def test_saves_only_the_inputs():
    """What autograd keeps for backward: x (and z) in their dtype, the weight, rstd [..., 1] fp32."""
    x = torch.randn(4, 256, 64).bfloat16().requires_grad_()
    z = torch.randn(4, 256, 64).bfloat16().requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        RMSNormGated(64).bfloat16()(x, z)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert all(t.dtype == torch.bfloat16 for t in big) and len(big) == 2
    assert sum(t.numel() * t.element_size() for t in saved) <= 2 * x.numel() * 2 + 4 * 256 * 4 + 64 * 2
