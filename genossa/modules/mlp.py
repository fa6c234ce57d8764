"""SwiGLU feed-forward block: [B, T, D] -> [B, T, D]."""
from __future__ import annotations

from torch import Tensor, nn

from genossa.ops.fused import swiglu


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with hidden width round(ratio * dim) (rounded up to 8)."""

    def __init__(self, dim: int, ratio: float, impl: str = "auto"):
        super().__init__()
        self.impl = impl  # the activation: auto / naive / triton (ops.fused)
        hidden = max(8, int(round(ratio * dim / 8)) * 8)
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(swiglu(self.gate_up(x), impl=self.impl))
