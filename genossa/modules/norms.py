"""RMSNorm and the gated RMSNorm of the Mamba2 mixer. Inputs [..., D]; statistics in fp32."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """x / rms(x) * weight over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class RMSNormGated(RMSNorm):
    """RMSNorm(x * silu(z)): the gate is applied before the norm, as in Mamba2, so the norm
    sees the gated signal and keeps the output scale independent of the gate's magnitude."""

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        if z is not None:
            x = (x.float() * F.silu(z.float())).to(x.dtype)
        return super().forward(x)
