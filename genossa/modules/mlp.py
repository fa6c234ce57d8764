"""SwiGLU feed-forward block: [B, T, D] -> [B, T, D]."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with hidden width round(ratio * dim) (rounded up to 8)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = max(8, int(round(ratio * dim / 8)) * 8)
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
