"""Mamba2 SSD scan: the public op `ssd` and its PyTorch references (see naive.py for the maths).

`impl="naive"` is the chunked PyTorch reference (linear memory in T); `impl="triton"` runs the
Triton kernels (kernels/, imported as genossa.kernels; see triton.py); `impl="auto"` picks
Triton for CUDA tensors and the reference otherwise.
"""
from __future__ import annotations

from torch import Tensor

from genossa.ops.impl import IMPLS, resolve_impl

from genossa.ops.ssd.naive import ScanImportance, segsum, ssd_chunked, ssd_recurrent



def ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    *,
    chunk_size: int,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
    return_importance: bool = False,
    impl: str = "auto",
):
    """Mamba2 SSD scan y = SSM(x) with skip D and gate silu(z).

    Args:
        x: [B, T, H, P] inputs per head.
        dt: [B, T, H] positive step sizes (already through softplus and bias).
        A: [H] negative decay rates (a_t = exp(dt_t * A)).
        B, C: [B, T, G, N] input/output projections of the state; G divides H.
        D: optional [H] skip (y += D * x).
        z: optional [B, T, H, P] gate (y *= silu(z)).
        chunk_size: chunk length of the scan (any positive int; T need not be a multiple).
        initial_state: optional [B, H, P, N] state before x[:, 0] (streaming).
        return_final_state: also return the [B, H, P, N] state after x[:, T-1] (fp32/fp64).
        return_importance: also return a `ScanImportance` (norm, change), each [B, T, H],
            of ||h_t|| and ||h_t - h_{t-1}||; computed without gradient.

    Returns:
        y [B, T, H, P] in x.dtype; with flags, a tuple (y, final_state?, importance?) in that order.
    """
    impl = resolve_impl("ssd", impl, x)
    if x.dim() != 4:
        raise ValueError(f"ssd: x must be [B, T, H, P], got shape {tuple(x.shape)}")
    bsz, T, H, P = x.shape
    if dt.shape != (bsz, T, H):
        raise ValueError(f"ssd: dt must be [B, T, H] = {(bsz, T, H)}, got {tuple(dt.shape)}")
    if A.shape != (H,):
        raise ValueError(f"ssd: A must be [H] = {(H,)}, got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (bsz, T) or B.shape != C.shape or H % B.shape[2]:
        raise ValueError(
            f"ssd: B and C must be [B, T, G, N] with G dividing H={H}, got {tuple(B.shape)} and {tuple(C.shape)}"
        )
    if D is not None and D.shape != (H,):
        raise ValueError(f"ssd: D must be [H] = {(H,)}, got {tuple(D.shape)}")
    if z is not None and z.shape != x.shape:
        raise ValueError(f"ssd: z must be shaped like x {tuple(x.shape)}, got {tuple(z.shape)}")
    N = B.shape[-1]
    if initial_state is not None and initial_state.shape != (bsz, H, P, N):
        raise ValueError(f"ssd: initial_state must be [B, H, P, N] = {(bsz, H, P, N)}, got {tuple(initial_state.shape)}")
    if impl == "triton":
        from genossa.ops.ssd.triton import ssd_triton  # triton is imported only when used

        return ssd_triton(x, dt, A, B, C, D, z, chunk_size=chunk_size, initial_state=initial_state,
                          return_final_state=return_final_state, return_importance=return_importance)
    y, final_state, importance = ssd_chunked(
        x, dt, A, B, C, D, z, chunk_size=chunk_size, initial_state=initial_state, return_importance=return_importance
    )
    if not (return_final_state or return_importance):
        return y
    out = (y,)
    if return_final_state:
        out += (final_state,)
    if return_importance:
        out += (importance,)
    return out


__all__ = ["IMPLS", "ScanImportance", "segsum", "ssd", "ssd_chunked", "ssd_recurrent"]
