"""RMSNorm and the gated RMSNorm of the Mamba2 mixer. Inputs [..., D]; statistics in fp32.

Both run through a custom autograd Function that saves only its inputs (in their own dtype) and
the fp32 reciprocal RMS, and recomputes the fp32 intermediates in backward: `_RMSNormFunction`
in PyTorch ops (impl "naive") or `_RMSNormTriton`, one fused kernel each way (kernels/rms_norm.py;
impl "triton", the default for CUDA tensors). Written with
plain autograd, the norms kept ~3 fp32 copies of [..., D] for backward (the gated one ~5): in a
bf16 training step at 1M bases that was ~23 kB per token and block, a third of the step's peak
memory with activation checkpointing. Numbers are those of the plain expression
(`rms_norm_reference`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genossa.ops.impl import as_rows, resolve_impl


def rms_norm_reference(x: Tensor, weight: Tensor, eps: float, z: Tensor | None = None) -> Tensor:
    """The norm as a plain expression (the reference of `rms_norm`; autograd saves fp32 copies)."""
    if z is not None:
        x = (x.float() * F.silu(z.float())).to(x.dtype)
    xf = x.float()
    xf = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    return (xf * weight.float()).to(x.dtype)


def _gated(x: Tensor, z: Tensor | None) -> Tensor:
    """fp32 input of the norm: x, or x * silu(z) rounded to x's dtype as the forward does."""
    if z is None:
        return x.float()
    return (x.float() * F.silu(z.float())).to(x.dtype).float()


class _RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, z: Tensor | None, eps: float) -> Tensor:
        g = _gated(x, z)
        rstd = torch.rsqrt(g.square().mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, z, rstd)
        return (g * rstd * weight.float()).to(x.dtype)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight, z, rstd = ctx.saved_tensors
        g = _gated(x, z)
        xhat = g * rstd
        dyf = dy.float()
        dweight = (dyf * xhat).reshape(-1, xhat.shape[-1]).sum(0).to(weight.dtype)
        dxhat = dyf * weight.float()
        dg = rstd * (dxhat - xhat * (dxhat * xhat).mean(-1, keepdim=True))
        if z is None:
            return dg.to(x.dtype), dweight, None, None
        zf = z.float()
        sig = torch.sigmoid(zf)
        dx = dg * zf * sig  # d(x * silu(z)) / dx = silu(z)
        dz = dg * x.float() * sig * (1 + zf * (1 - sig))  # silu'(z) = sig(z) (1 + z (1 - sig(z)))
        return dx.to(x.dtype), dweight, dz.to(z.dtype), None


class _RMSNormTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, z: Tensor | None, eps: float) -> Tensor:
        from genossa.kernels.rms_norm import rms_norm_fwd  # triton only when used

        x2, z2 = as_rows(x), None if z is None else as_rows(z)
        y, rstd = rms_norm_fwd(x2, weight, z2, eps)
        ctx.save_for_backward(x2, weight, z2, rstd)
        ctx.shapes = x.shape, None if z is None else z.shape
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy: Tensor):
        from genossa.kernels.rms_norm import rms_norm_bwd

        x2, weight, z2, rstd = ctx.saved_tensors
        dx, dweight, dz = rms_norm_bwd(as_rows(dy), x2, weight, z2, rstd)
        x_shape, z_shape = ctx.shapes
        return dx.view(x_shape), dweight, None if dz is None else dz.view(z_shape), None


def rms_norm(x: Tensor, weight: Tensor, eps: float, z: Tensor | None = None, impl: str = "auto") -> Tensor:
    """RMSNorm(x [* silu(z)]) * weight over the last axis, in x's dtype, saving only the inputs.
    impl: "naive" (PyTorch ops), "triton" (fused kernels) or "auto" (Triton on CUDA tensors)."""
    if resolve_impl("rms_norm", impl, x) == "triton":
        return _RMSNormTriton.apply(x, weight, z, eps)
    return _RMSNormFunction.apply(x, weight, z, eps)


class RMSNorm(nn.Module):
    """x / rms(x) * weight over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-5, impl: str = "auto"):
        super().__init__()
        self.eps = eps
        self.impl = impl
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps, impl=self.impl)


class RMSNormGated(RMSNorm):
    """RMSNorm(x * silu(z)): the gate is applied before the norm, as in Mamba2, so the norm
    sees the gated signal and keeps the output scale independent of the gate's magnitude."""

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        return rms_norm(x, self.weight, self.eps, z, impl=self.impl)
