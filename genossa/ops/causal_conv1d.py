"""The Mamba2 mixer's causal depthwise convolution followed by SiLU, streamable:

    y = silu(conv1d([past; x], weight, bias, groups=C)),  new past = last K - 1 rows of [past; x]

x [B, T, C], weight [C, 1, K] (nn.Conv1d's), bias [C], past [B, K - 1, C] or None (zeros: the
sequence starts here). `impl="naive"` is the PyTorch expression (the reference);
`impl="triton"` one fused kernel each way (kernels/causal_conv1d.py); "auto" picks Triton for
CUDA tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genossa.ops.impl import resolve_impl


def conv1d_silu_reference(x: Tensor, weight: Tensor, bias: Tensor, past: Tensor | None) -> Tensor:
    K = weight.shape[-1]
    if past is None:
        past = x.new_zeros(x.shape[0], K - 1, x.shape[2])
    padded = torch.cat([past.to(x.dtype), x], dim=1)  # [B, K - 1 + T, C]
    conv = F.conv1d(padded.transpose(1, 2), weight, bias, groups=x.shape[2])
    return F.silu(conv.transpose(1, 2))


class _CausalConv1dSiLUTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, past: Tensor | None) -> Tensor:
        from genossa.kernels.causal_conv1d import conv1d_silu_fwd  # triton only when used

        x = x if x.stride(-1) == 1 else x.contiguous()
        w2 = weight[:, 0, :].contiguous()
        past_c = None if past is None else past.to(x.dtype).contiguous()
        ctx.save_for_backward(x, w2, bias, past_c)
        ctx.weight_dtype, ctx.past_dtype = weight.dtype, None if past is None else past.dtype
        return conv1d_silu_fwd(x, w2, bias, past_c)

    @staticmethod
    def backward(ctx, dy: Tensor):
        from genossa.kernels.causal_conv1d import conv1d_silu_bwd

        x, w2, bias, past = ctx.saved_tensors
        dy = dy if dy.stride(-1) == 1 else dy.contiguous()
        dx, dw, db, dpast = conv1d_silu_bwd(dy, x, w2, bias, past)
        dw = dw[:, None, :].to(ctx.weight_dtype)
        return dx, dw, db.to(bias.dtype), None if dpast is None else dpast.to(ctx.past_dtype)


def causal_conv1d_silu(x: Tensor, weight: Tensor, bias: Tensor, past: Tensor | None = None,
                       impl: str = "auto") -> tuple[Tensor, Tensor]:
    """(y [B, T, C] in x's dtype, the next piece's past [B, K - 1, C])."""
    K = weight.shape[-1]
    if resolve_impl("causal_conv1d", impl, x) == "triton":
        y = _CausalConv1dSiLUTriton.apply(x, weight, bias, past)
    else:
        y = conv1d_silu_reference(x, weight, bias, past)
    if x.shape[1] >= K - 1:
        # a copy: a view of the last inputs would keep the whole piece (and the projection it is
        # a slice of) alive with the streaming state
        new_past = x[:, x.shape[1] - (K - 1):].clone()
    else:
        old = past.to(x.dtype) if past is not None else x.new_zeros(x.shape[0], K - 1, x.shape[2])
        new_past = torch.cat([old, x], 1)[:, -(K - 1):]
    return y, new_past
