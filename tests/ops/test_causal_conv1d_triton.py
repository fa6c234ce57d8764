"""The fused causal depthwise conv + SiLU kernels against the PyTorch expression
(`conv1d_silu_reference`): output and the gradients of x, weight, bias and the carried past, on the
CPU through the Triton interpreter (fp32, fp16) and, marked gpu, on CUDA (bf16, fp32).

Relative error ||a - b|| / ||b||: fp32 1e-5; fp16 1e-2 (the reference convolves in fp16 on the
CPU, the kernel in fp32 from fp16 inputs); bf16 (GPU) 2e-2.
"""
import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels, rel

import_kernels("genossa.kernels.causal_conv1d", "_conv_fwd_kernel")

from genossa.ops.causal_conv1d import causal_conv1d_silu  # noqa: E402

TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def case(B, T, C, dtype, *, K=4, past=True, seed=0):
    """x as a split of a wider projection (row stride C + 7, as in the mixer), weight, bias, past, dy."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(B, T, C + 7, generator=g)
    to = dict(device=DEVICE, dtype=dtype)
    x = wide.to(**to)[..., 2 : 2 + C]
    w = (0.5 * torch.randn(C, 1, K, generator=g)).to(**to)
    b = (0.1 * torch.randn(C, generator=g)).to(**to)
    p = torch.randn(B, K - 1, C, generator=g).to(**to) if past else None
    dy = torch.randn(B, T, C, generator=g).to(**to)
    return x, w, b, p, dy


def run(impl, x, w, b, p, dy):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b) + ((p,) if p is not None else ())]
    y, new_past = causal_conv1d_silu(*leaves[:3], leaves[3] if p is not None else None, impl=impl)
    return y, new_past, torch.autograd.grad(y, leaves, dy)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("past", [False, True])
@pytest.mark.parametrize("B,T,C", [(1, 1, 5), (2, 2, 37), (2, 70, 37), (1, 131, 80)])
def test_matches_the_reference(B, T, C, past, dtype):
    x, w, b, p, dy = case(B, T, C, dtype, past=past)
    assert x.stride(1) == C + 7
    y, new_past, got = run("triton", x, w, b, p, dy)
    ref, ref_past, want = run("naive", x, w, b, p, dy)
    assert y.dtype == dtype and y.shape == ref.shape
    assert rel(y, ref) < TOL[dtype]
    torch.testing.assert_close(new_past, ref_past, rtol=0, atol=0)
    for name, a, c in zip(("x", "weight", "bias", "past"), got, want):
        assert a.dtype == c.dtype and a.shape == c.shape, name
        assert rel(a, c) < TOL[dtype], (name, rel(a, c))


def test_streaming_pieces_equal_one_shot():
    """Pieces of 3, 1, 40 and 20 positions, each carrying the last K - 1 inputs, give the one-shot output."""
    x, w, b, _, _ = case(2, 64, 24, torch.float32, past=False, seed=2)
    one_shot, _ = causal_conv1d_silu(x, w, b, None, impl="triton")
    past, pieces = None, []
    for piece in x.split([3, 1, 40, 20], dim=1):
        y, past = causal_conv1d_silu(piece, w, b, past, impl="triton")
        pieces.append(y)
    assert rel(torch.cat(pieces, 1), one_shot) < 1e-6


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_matches_the_reference(dtype):
    x, w, b, p, dy = case(2, 4099, 1024, dtype, seed=5)
    y, _, got = run("triton", x, w, b, p, dy)
    ref, _, want = run("naive", x, w, b, p, dy)
    assert rel(y, ref) < TOL[dtype]
    for name, a, c in zip(("x", "weight", "bias", "past"), got, want):
        assert rel(a, c) < TOL[dtype], (name, rel(a, c))
