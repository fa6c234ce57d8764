"""The fused SwiGLU activation, fusion gate + residual and scan-bias fold (kernels/elementwise.py)
against their PyTorch expressions: outputs and every gradient, on the CPU through the Triton interpreter (fp32,
fp16, a 16-bit gate on an fp32 residual as under autocast) and, marked gpu, on CUDA (bf16).

Relative error: fp32 1e-6; 16-bit inputs 2e-3 (the kernel computes in fp32 where the reference
rounds each intermediate to 16 bits); bf16 (GPU) 1e-2.
"""
import pytest
import torch
from kernel_helpers import DEVICE, gpu, import_kernels, rel

import_kernels("genossa.kernels.elementwise", "_swiglu_fwd_kernel")

from genossa.models import GenossaLM  # noqa: E402
from genossa.models.config import tiny  # noqa: E402
from genossa.ops.fused import gate_residual, swiglu  # noqa: E402
from genossa.ops.sparse_attention.bias import fold_scan_bias  # noqa: E402

TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def grads(fn, inputs, dout):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    return out, torch.autograd.grad(out, leaves, dout)


def check(fn_triton, fn_ref, inputs, dout, tol):
    out, got = grads(fn_triton, inputs, dout)
    ref, want = grads(fn_ref, inputs, dout)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    assert rel(out, ref) < tol
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert rel(a, b) < tol, (i, rel(a, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(1, 1, 2), (2, 37, 2 * 136), (3, 5, 2 * 24)])
def test_swiglu_matches_the_reference(shape, dtype):
    g = torch.Generator().manual_seed(0)
    gu = (2 * torch.randn(*shape, generator=g)).to(DEVICE, dtype)
    dy = torch.randn(*shape[:-1], shape[-1] // 2, generator=g).to(DEVICE, dtype)
    check(lambda t: swiglu(t, impl="triton"), lambda t: swiglu(t, impl="naive"), [gu], dy, TOL[dtype])


@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.float16, torch.float16),
                                    (torch.float32, torch.float16)])
@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 41, 40), (1, 700, 33)])
def test_gate_residual_matches_the_reference(shape, dtypes):
    x_dtype, branch_dtype = dtypes  # (fp32, fp16): the residual stream under autocast
    g = torch.Generator().manual_seed(1)
    x, p, s, a = (torch.randn(*shape, generator=g) for _ in range(4))
    inputs = [x.to(DEVICE, x_dtype)] + [(3 * t).to(DEVICE, branch_dtype) for t in (p, s, a)]
    dout = torch.randn(*shape, generator=g).to(DEVICE, x_dtype)
    check(lambda *t: gate_residual(*t, impl="triton"), lambda *t: gate_residual(*t, impl="naive"), inputs, dout,
          TOL[branch_dtype])


def check_fold(shape, dtype, tol, device=DEVICE, seed=3):
    """fold_scan_bias, Triton against PyTorch: k~, b and the gradients of the fused q/k/v
    projection (k is its strided slice, as in the model), ws, wks, lam and mu."""
    B, T, H, D = shape
    g = torch.Generator().manual_seed(seed)
    qkv, ws, wks = (torch.randn(*s, generator=g).to(device, dtype) for s in ((B, T, 3, H, D), shape, shape))
    lam, mu = (torch.rand(H, generator=g) + 0.1).to(device), (torch.rand(H, generator=g) - 0.5).to(device)
    dkf = torch.randn(*shape, generator=g).to(device, dtype)
    dkb = torch.randn(B, T, H, generator=g).to(device)
    results = []
    for impl in ("triton", "naive"):
        leaves = [t.detach().clone().requires_grad_() for t in (qkv, ws, wks, lam, mu)]
        _, kf, kb = fold_scan_bias(leaves[0][:, :, 0], leaves[0][:, :, 1], *leaves[1:], scale=D ** -0.5, impl=impl)
        grads = torch.autograd.grad((kf.float() * dkf.float()).sum() + (kb * dkb).sum(), leaves)
        results.append((kf, kb, grads))
    (kf, kb, got), (kf_ref, kb_ref, want) = results
    assert kf.dtype == dtype and kb.dtype == torch.float32
    assert rel(kf, kf_ref) < tol and rel(kb, kb_ref) < tol
    for name, a, b in zip(("qkv", "ws", "wks", "lam", "mu"), got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert rel(a, b) < tol, (name, rel(a, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 8), (2, 37, 3, 24), (1, 50, 4, 64)])
def test_fold_scan_bias_matches_the_reference(shape, dtype):
    check_fold(shape, dtype, TOL[dtype])


def test_model_blocks_use_the_fused_ops():
    """kernels: triton runs the fused gate and SwiGLU in every block; the model's logits and
    gradients equal the naive model's (same weights)."""
    torch.manual_seed(0)
    naive = GenossaLM(tiny(kernels="naive")).to(DEVICE)
    fused = GenossaLM(tiny(kernels="triton")).to(DEVICE)
    fused.load_state_dict(naive.state_dict())
    assert all(b.fusion.impl == "triton" and b.mlp.impl == "triton" for b in fused.blocks)
    tokens = torch.randint(0, 4, (2, 64), device=DEVICE)
    loss_n, loss_f = naive.compute_loss(tokens).loss, fused.compute_loss(tokens).loss
    loss_n.backward()
    loss_f.backward()
    assert rel(loss_f, loss_n) < 1e-5
    for (name, p_n), p_f in zip(naive.named_parameters(), fused.parameters()):
        if p_n.grad is not None and p_n.grad.norm() > 0:
            assert rel(p_f.grad, p_n.grad) < 1e-3, name


@pytest.mark.gpu
@gpu
def test_gpu_bf16():
    g = torch.Generator().manual_seed(2)
    gu = (2 * torch.randn(3, 4099, 2 * 1376, generator=g)).to("cuda", torch.bfloat16)
    dy = torch.randn(3, 4099, 1376, generator=g).to("cuda", torch.bfloat16)
    check(lambda t: swiglu(t, impl="triton"), lambda t: swiglu(t, impl="naive"), [gu], dy, TOL[torch.bfloat16])
    x, p, s, a = (torch.randn(3, 4099, 512, generator=g).to("cuda", torch.bfloat16) for _ in range(4))
    check(lambda *t: gate_residual(*t, impl="triton"), lambda *t: gate_residual(*t, impl="naive"), [x, p, s, a],
          torch.randn(3, 4099, 512, generator=g).to("cuda", torch.bfloat16), TOL[torch.bfloat16])
    check_fold((2, 4099, 16, 64), torch.bfloat16, TOL[torch.bfloat16], device="cuda")
