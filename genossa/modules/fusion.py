"""Adaptive hybrid fusion: a learned, input-conditioned gate between SSM and attention outputs."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from genossa.ops.fused import gate_residual


class FusionGate(nn.Module):
    """out = g * ssm + (1 - g) * attn with g = sigmoid(W x + b) per position and channel.

    x is the (normed) block input both branches read, so each position and channel decides how
    much it relies on the scan (cheap, long memory) or on attention (exact recall). b = 0 starts
    at an even mix. All [B, T, D].
    """

    def __init__(self, dim: int, impl: str = "auto"):
        super().__init__()
        self.impl = impl  # the fused gate + residual: auto / naive / triton (ops.fused)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.bias)

    def gate(self, x: Tensor) -> Tensor:
        """[B, T, D] gate values in (0, 1)."""
        return torch.sigmoid(self.proj(x))

    def forward(self, x: Tensor, ssm: Tensor, attn: Tensor) -> Tensor:
        g = self.gate(x)
        return g * ssm + (1 - g) * attn

    def add_to(self, residual: Tensor, x: Tensor, ssm: Tensor, attn: Tensor) -> Tensor:
        """residual + forward(x, ssm, attn), one fused kernel each way on CUDA."""
        return gate_residual(residual, self.proj(x), ssm, attn, impl=self.impl)
