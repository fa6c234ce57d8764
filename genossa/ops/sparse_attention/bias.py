"""The scan-informed bias folded into a key and a per-key scalar (DESIGN.md section 5).

logits_ij = scale * <q_i, k_j> + lambda * <q_i, W s_j> + mu * <k_j, W' s_j>
          = <q_i, k~_j> + b_j,   k~_j = scale * k_j + lambda * W s_j,   b_j = mu * <k_j, W' s_j>

Both bias terms vary with the key j (a term constant across keys for a query would cancel in the
softmax). DESIGN.md folds them by widening the head dimension to 2 D + 1 ([q, lambda q, 1] .
[k, W s, b]); folding the query-side term into the key instead keeps the head dimension D and
leaves one fp32 scalar per key that the kernels add to the logit: for D = 64 the widened 129
was padded to 256 lanes, 4x the dot-product work and 2x the key bytes of this form. The
attention op then runs with scale 1 and key_bias = b.
"""
from __future__ import annotations

import torch
from torch import Tensor

from genossa.ops.impl import resolve_impl
from genossa.ops.ssd.naive import compute_dtype


def fold_scan_bias(
    q: Tensor, k: Tensor, ws: Tensor, wks: Tensor, lam: Tensor, mu: Tensor, scale: float, impl: str = "naive"
) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, folded keys and key biases such that <q_i, k~_j> + b_j is the biased logit.

    q, k: [B, T, H, D]; ws = W s_j and wks = W' s_j: [B, T, H, D]; lam, mu: [H].
    Returns q [B, T, H, D], k~ [B, T, H, D] (k's dtype) and b [B, T, H] (fp32 for 16-bit inputs:
    a bias in 16 bits would round the logits it shifts; fp64 stays fp64). impl: "naive" (the
    PyTorch expressions below), "triton" (one kernel each way, fp32 arithmetic; not for fp64) or
    "auto" (Triton for CUDA tensors).
    """
    if resolve_impl("fold_scan_bias", impl, k) == "triton" and k.dtype != torch.float64:
        k_folded, key_bias = _FoldScanBiasTriton.apply(k, ws, wks, lam, mu, scale)
        return q, k_folded, key_bias
    k_folded = (scale * k + lam[:, None] * ws).to(k.dtype)
    cd = compute_dtype(k.dtype)
    key_bias = mu.to(cd) * (k.to(cd) * wks.to(cd)).sum(-1)
    return q, k_folded, key_bias


class _FoldScanBiasTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, k, ws, wks, lam, mu, scale):
        from genossa.kernels.elementwise import fold_bias_fwd  # triton only when used

        ctx.save_for_backward(k, ws, wks, lam, mu)
        ctx.scale = scale
        return fold_bias_fwd(k, ws, wks, lam, mu, scale)

    @staticmethod
    def backward(ctx, dkf, dkb):
        from genossa.kernels.elementwise import fold_bias_bwd

        k, ws, wks, lam, mu = ctx.saved_tensors
        if dkf is None:
            dkf = torch.zeros_like(k)
        if dkb is None:
            dkb = k.new_zeros(k.shape[:3], dtype=torch.float32)
        dk, dws, dwks, dlam, dmu = fold_bias_bwd(dkf, dkb, k, ws, wks, lam, mu, ctx.scale)
        return dk, dws, dwks, dlam.to(lam.dtype), dmu.to(mu.dtype), None
