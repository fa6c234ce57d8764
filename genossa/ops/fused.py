"""The hybrid block's elementwise glue as fused ops: the SwiGLU activation and the fusion gate
with the residual. `impl="naive"` is the PyTorch expression (the reference), `impl="triton"`
one kernel each way (kernels/elementwise.py), "auto" Triton for CUDA tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genossa.ops.impl import as_rows, resolve_impl


def swiglu_reference(gu: Tensor) -> Tensor:
    gate, up = gu.chunk(2, dim=-1)
    return F.silu(gate) * up


def gate_residual_reference(x: Tensor, p: Tensor, s: Tensor, a: Tensor) -> Tensor:
    g = torch.sigmoid(p)
    return x + (g * s + (1 - g) * a)


class _SwiGLUTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gu: Tensor) -> Tensor:
        from genossa.kernels.elementwise import swiglu_fwd  # triton only when used

        gu2 = as_rows(gu)
        ctx.save_for_backward(gu2)
        ctx.shape = gu.shape
        return swiglu_fwd(gu2).view(*gu.shape[:-1], gu.shape[-1] // 2)

    @staticmethod
    def backward(ctx, dy: Tensor):
        from genossa.kernels.elementwise import swiglu_bwd

        (gu2,) = ctx.saved_tensors
        return swiglu_bwd(gu2, as_rows(dy)).view(ctx.shape)


class _GateResidualTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: Tensor, s: Tensor, a: Tensor) -> Tensor:
        from genossa.kernels.elementwise import gate_residual_fwd

        p, s, a = (t.contiguous() for t in (p, s, a))  # each read in its own dtype
        ctx.save_for_backward(p, s, a)
        return gate_residual_fwd(x.contiguous(), p, s, a)

    @staticmethod
    def backward(ctx, dout: Tensor):
        from genossa.kernels.elementwise import gate_residual_bwd

        p, s, a = ctx.saved_tensors
        dp, ds, da = gate_residual_bwd(dout.contiguous(), p, s, a)
        return dout, dp, ds, da


def swiglu(gu: Tensor, impl: str = "auto") -> Tensor:
    """silu(gate) * up for gu = [gate, up] along the last axis: [..., 2H] -> [..., H]."""
    if gu.shape[-1] % 2:
        raise ValueError(f"swiglu: the last axis holds gate and up halves, got width {gu.shape[-1]}")
    if resolve_impl("swiglu", impl, gu) == "triton":
        return _SwiGLUTriton.apply(gu)
    return swiglu_reference(gu)


def gate_residual(x: Tensor, p: Tensor, s: Tensor, a: Tensor, impl: str = "auto") -> Tensor:
    """x + g * s + (1 - g) * a with g = sigmoid(p): the residual stream plus the fusion gate's mix
    of the SSM output s and the attention output a. All [..., D], one shape; the result in x's
    dtype (the residual stream's: fp32 under autocast, where p, s, a are 16-bit)."""
    if not (x.shape == p.shape == s.shape == a.shape):
        raise ValueError(f"gate_residual: one shape expected, got {[tuple(t.shape) for t in (x, p, s, a)]}")
    if resolve_impl("gate_residual", impl, x) == "triton":
        return _GateResidualTriton.apply(x, p, s, a)
    return gate_residual_reference(x, p, s, a)
