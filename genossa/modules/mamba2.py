"""Multi-scale Mamba2 mixer: in_proj -> causal depthwise conv1d -> SiLU -> SSD -> gated RMSNorm -> out_proj.

The heads are split into groups, one per memory scale m in `scales` (default 128 / 1024 / 4096
tokens): with A = -1 at init, a head forgets with time constant 1/dt, so its dt is initialized
log-uniformly in [1/(2m), 2/m]. The scan's state norms are returned per scale (mean over the
group's heads) for the sparse attention's hierarchical importance; they cost one extra pass of
the chunked scan and no gradient.

Shapes: x [B, T, d_model]; inner width E = heads * head_dim; conv channels E + 2 G N.
Streaming state: the last (d_conv - 1) conv inputs and the SSM state (`MixerState`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genossa.modules.norms import RMSNormGated
from genossa.ops.causal_conv1d import causal_conv1d_silu
from genossa.ops.ssd import ssd


class MixerState(NamedTuple):
    """What a causal mixer carries from one chunk of a sequence to the next."""

    conv: Tensor
    """[B, d_conv - 1, conv channels] the last conv inputs (zeros before the sequence)."""
    ssm: Tensor
    """[B, H, P, N] the SSM state after the last position (fp32)."""


class MixerOutput(NamedTuple):
    out: Tensor
    """[B, T, d_model] the mixer's output."""
    scan: Tensor
    """[B, T, E] the gated, normed SSM output (input of the scan summaries S)."""
    norm: Tensor
    """[B, T, S] per scale, mean over its heads of ||h_t|| (no gradient)."""
    change: Tensor
    """[B, T, S] per scale, mean over its heads of ||h_t - h_{t-1}|| (no gradient)."""
    state: MixerState | None
    """The state after the last position (causal mixers only)."""


def inverse_softplus(x: Tensor) -> Tensor:
    """y with softplus(y) = x, for x > 0."""
    return x + torch.log(-torch.expm1(-x))


class Mamba2Mixer(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        head_dim: int,
        d_state: int,
        *,
        n_groups: int = 1,
        d_conv: int = 4,
        chunk_size: int = 64,
        scales: tuple[int, ...] = (128, 1024, 4096),
        bidirectional: bool = False,
        eps: float = 1e-5,
        impl: str = "auto",
    ):
        super().__init__()
        if n_heads % len(scales) or n_heads % n_groups:
            raise ValueError(f"n_heads {n_heads} must be a multiple of len(scales) and of n_groups")
        self.n_heads, self.head_dim, self.d_state, self.n_groups = n_heads, head_dim, d_state, n_groups
        self.d_inner = n_heads * head_dim
        self.d_conv, self.chunk_size, self.scales = d_conv, chunk_size, tuple(scales)
        self.bidirectional = bidirectional
        self.impl = impl  # SSD, conv and norm implementation: auto / naive / triton (ops)
        self.conv_dim = self.d_inner + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + n_heads, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim)
        self.dt_bias = nn.Parameter(torch.empty(n_heads))
        self.A_log = nn.Parameter(torch.zeros(n_heads))  # A = -exp(A_log) = -1: dt alone sets the memory
        self.D = nn.Parameter(torch.ones(n_heads))
        self.norm = RMSNormGated(self.d_inner, eps=eps, impl=impl)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.reset_dt()

    @torch.no_grad()
    def reset_dt(self) -> None:
        """dt of the heads of scale m log-uniform in [1/(2m), 2/m] (memory ~m tokens)."""
        per_scale = self.n_heads // len(self.scales)
        lo = torch.tensor([1 / (2 * m) for m in self.scales]).repeat_interleave(per_scale)
        hi = torch.tensor([2 / m for m in self.scales]).repeat_interleave(per_scale)
        u = torch.rand(self.n_heads)
        dt = torch.exp(torch.log(lo) + u * (torch.log(hi) - torch.log(lo)))
        self.dt_bias.copy_(inverse_softplus(dt))

    def empty_state(self, batch: int, device=None, dtype=torch.float32) -> MixerState:
        """The state before any token."""
        return MixerState(
            torch.zeros(batch, self.d_conv - 1, self.conv_dim, device=device, dtype=dtype),
            torch.zeros(batch, self.n_heads, self.head_dim, self.d_state, device=device,
                        dtype=torch.float64 if dtype == torch.float64 else torch.float32),
        )

    def _scan(self, xbc: Tensor, dt: Tensor, state: MixerState | None):
        """Conv + SSD over one direction. xbc [B, T, conv_dim], dt [B, T, H] (raw)."""
        bsz, T, _ = xbc.shape
        H, P, N, G = self.n_heads, self.head_dim, self.d_state, self.n_groups
        xbc, conv_state = causal_conv1d_silu(xbc, self.conv1d.weight, self.conv1d.bias,
                                             state.conv if state is not None else None, impl=self.impl)
        x, B, C = torch.split(xbc, [self.d_inner, G * N, G * N], dim=-1)
        dt = F.softplus(dt + self.dt_bias)
        A = -torch.exp(self.A_log.float())
        y, ssm_state, imp = ssd(
            x.reshape(bsz, T, H, P), dt, A, B.reshape(bsz, T, G, N), C.reshape(bsz, T, G, N), self.D,
            chunk_size=self.chunk_size, initial_state=state.ssm if state is not None else None,
            return_final_state=True, return_importance=True, impl=self.impl,
        )
        new_state = MixerState(conv_state, ssm_state)
        return y.reshape(bsz, T, self.d_inner), imp, new_state

    def _in_proj(self, x: Tensor) -> Tensor:
        """in_proj(x), computed with the weight padded by zero rows to a multiple of 8 outputs (a view
        of the real columns is returned): cuBLAS sends a bf16 GEMM of another
        width to a slower kernel (small preset, 1,676 outputs: 2.05 ms against 0.68 padded, 262,144
        tokens on an H200; benchmarks/in_proj_shapes.py)."""
        weight = self.in_proj.weight
        pad = -weight.shape[0] % 8
        if not pad:
            return F.linear(x, weight)
        return F.linear(x, F.pad(weight, (0, 0, 0, pad)))[..., : weight.shape[0]]

    def _per_scale(self, v: Tensor) -> Tensor:
        """[B, T, H] -> [B, T, S] mean over each scale's heads."""
        return v.reshape(*v.shape[:2], len(self.scales), -1).mean(-1)

    def forward(self, x: Tensor, state: MixerState | None = None) -> MixerOutput:
        """x [B, T, d_model]; `state` continues a sequence (causal only)."""
        z, xbc, dt = torch.split(self._in_proj(x), [self.d_inner, self.conv_dim, self.n_heads], dim=-1)
        if not self.bidirectional:
            y, imp, new_state = self._scan(xbc, dt, state)
            norm, change = self._per_scale(imp.norm), self._per_scale(imp.change)
        else:
            if state is not None:
                raise ValueError("a bidirectional mixer sees the whole sequence: it cannot stream")
            # Caduceus-style: the same weights scan the reversed sequence; both directions add up
            y, imp, _ = self._scan(xbc, dt, None)
            y_rev, imp_rev, _ = self._scan(xbc.flip(1), dt.flip(1), None)
            y = y + y_rev.flip(1)
            norm = self._per_scale(imp.norm) + self._per_scale(imp_rev.norm).flip(1)
            change = self._per_scale(imp.change) + self._per_scale(imp_rev.change).flip(1)
            new_state = None
        scan = self.norm(y, z)
        return MixerOutput(self.out_proj(scan), scan, norm, change, new_state)

    def memory_lengths(self) -> Tensor:
        """[H] current memory (1 / (dt * |A|) tokens) of each head at zero input to dt."""
        dt = F.softplus(self.dt_bias.detach())
        return 1.0 / (dt * torch.exp(self.A_log.detach()))

