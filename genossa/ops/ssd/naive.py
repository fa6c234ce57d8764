"""Mamba2 SSD (state space duality) in plain PyTorch: the references every kernel is tested against.

The recurrence, per batch b and head h, with state h_t of shape (P, N):

    a_t = exp(dt_t * A)                          dt_t > 0, A < 0, so 0 < a_t <= 1
    h_t = a_t * h_{t-1} + dt_t * x_t B_t^T       x_t: (P,), B_t: (N,)
    y_t = h_t C_t + D * x_t                      then y_t *= silu(z_t) when z is given

h_{-1} is the initial state (zeros unless given). Shapes used throughout:

    x [B, T, H, P]    dt [B, T, H]    A [H]    B, C [B, T, G, N] (G divides H; head h uses
    group h // (H // G))    D [H]    z [B, T, H, P]    state [B, H, P, N]

Importance (DESIGN.md section 2) is, per head, ||h_t||_F + ||h_t - h_{t-1}||_F. `ssd_recurrent`
computes it from the states it holds (brute force); `ssd_chunked` derives it from quantities the
chunked scan already has, never holding more than one state per chunk:

    r_t = x_t^T h_{t-1} B_t    (an SSD output pass with C replaced by B, read before the update)
    s_t = |x_t|^2 |B_t|^2
    n_t = ||h_t||^2 = a_t^2 n_{t-1} + 2 a_t dt_t r_t + dt_t^2 s_t
    d_t = ||h_t - h_{t-1}||^2 = (a_t - 1)^2 n_{t-1} + 2 (a_t - 1) dt_t r_t + dt_t^2 s_t

(expand h_t = a h_{t-1} + dt x B^T, and (a - 1) h_{t-1} + dt x B^T, using
<h_{t-1}, x B^T> = r_t and ||x B^T||^2 = s_t). DESIGN.md reads the pass after the update,
q_t = x_t^T h_t B_t = a_t r_t + dt_t s_t, and divides by a_t to get r_t; reading the state before
the update costs the same and never divides by a_t, which underflows for large dt * |A|.
(a_t - 1) is expm1(dt_t A), exact for the tiny dt of long-memory heads.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class ScanImportance(NamedTuple):
    """Per-head state norms of an SSD scan (no gradient)."""

    norm: Tensor
    """[B, T, H] ||h_t||_F."""
    change: Tensor
    """[B, T, H] ||h_t - h_{t-1}||_F (h_{-1} = the initial state)."""

    @property
    def score(self) -> Tensor:
        """[B, T, H] the importance ||h_t|| + ||h_t - h_{t-1}||."""
        return self.norm + self.change


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp64 stays fp64, everything else computes in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def expand_groups(bc: Tensor, n_heads: int) -> Tensor:
    """[B, T, G, N] -> [B, T, H, N]: head h reads group h // (H // G)."""
    groups = bc.shape[2]
    if n_heads % groups:
        raise ValueError(f"B/C have {groups} groups, which does not divide {n_heads} heads")
    return bc.repeat_interleave(n_heads // groups, dim=2) if groups != n_heads else bc


def apply_skip_and_gate(y: Tensor, x: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """y + D * x, then * silu(z). All [B, T, H, P]; D [H]."""
    if D is not None:
        y = y + x * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def ssd_recurrent(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_importance: bool = False,
) -> tuple[Tensor, Tensor, ScanImportance | None]:
    """Step-by-step recurrence (the ground truth; O(T) Python steps).

    Returns (y [B, T, H, P], final_state [B, H, P, N], importance or None). Importance is
    taken by brute force from the states (never in the model: tests only).
    """
    out_dtype = x.dtype
    cd = compute_dtype(x.dtype)
    bsz, T, H, P = x.shape
    x, dt, A = x.to(cd), dt.to(cd), A.to(cd)
    B, C = expand_groups(B, H).to(cd), expand_groups(C, H).to(cd)
    N = B.shape[-1]
    h = x.new_zeros(bsz, H, P, N) if initial_state is None else initial_state.to(cd)
    ys, norms, changes = [], [], []
    for t in range(T):
        a = torch.exp(dt[:, t] * A)  # [B, H]
        h_new = a[..., None, None] * h + (dt[:, t, :, None, None] * x[:, t, :, :, None]) * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h_new, C[:, t]))
        if return_importance:
            with torch.no_grad():
                norms.append(h_new.detach().flatten(2).norm(dim=-1))
                changes.append((h_new - h).detach().flatten(2).norm(dim=-1))
        h = h_new
    y = torch.stack(ys, dim=1) if T else x.new_zeros(bsz, 0, H, P)
    y = apply_skip_and_gate(y, x, D, z)
    importance = None
    if return_importance:
        empty = x.new_zeros(bsz, 0, H)
        importance = ScanImportance(
            torch.stack(norms, 1) if T else empty, torch.stack(changes, 1) if T else empty
        )
    return y.to(out_dtype), h, importance


def segsum(a: Tensor) -> Tensor:
    """Stable segment sums: [..., L] -> [..., L, L] with out[..., i, j] = a_{j+1} + ... + a_i
    for j <= i and -inf above the diagonal, so exp(out) is the decay from j to i.

    Built by a masked cumsum rather than cumsum differences, which lose precision
    (minimal SSD, arXiv 2405.21060).
    """
    L = a.shape[-1]
    a = a[..., None].expand(*a.shape, L)  # [..., i, j] = a_i
    strict = torch.tril(torch.ones(L, L, dtype=torch.bool, device=a.device), diagonal=-1)
    out = torch.cumsum(a.masked_fill(~strict, 0), dim=-2)
    lower = torch.tril(torch.ones(L, L, dtype=torch.bool, device=a.device), diagonal=0)
    return out.masked_fill(~lower, -torch.inf)


def _to_chunks(t: Tensor, chunk: int) -> Tensor:
    """[B, T, ...] zero-padded to a multiple of chunk -> [B, NC, chunk, ...]."""
    T = t.shape[1]
    pad = (-T) % chunk
    if pad:
        t = torch.cat([t, t.new_zeros(t.shape[0], pad, *t.shape[2:])], dim=1)
    return t.reshape(t.shape[0], -1, chunk, *t.shape[2:])


def ssd_chunked(
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
    return_importance: bool = False,
) -> tuple[Tensor, Tensor, ScanImportance | None]:
    """Chunked SSD ("minimal SSD", arXiv 2405.21060): quadratic blocks inside chunks of
    `chunk_size`, states passed between chunks by a loop over the T / chunk_size chunks.

    Memory is O(T * chunk_size + (T / chunk_size) * P * N): linear in T. Padding to a multiple of
    the chunk uses dt = 0 (decay 1, no input), so the final state is the state after x[:, T-1].
    Returns (y [B, T, H, P], final_state [B, H, P, N], importance or None).
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    out_dtype = x.dtype
    cd = compute_dtype(x.dtype)
    bsz, T, H, P = x.shape
    x_c, dt_c, A_c = x.to(cd), dt.to(cd), A.to(cd)
    B_c, C_c = expand_groups(B, H).to(cd), expand_groups(C, H).to(cd)
    N = B_c.shape[-1]
    if T == 0:
        state = x_c.new_zeros(bsz, H, P, N) if initial_state is None else initial_state.to(cd)
        empty = x_c.new_zeros(bsz, 0, H)
        return x.new_zeros(bsz, 0, H, P), state, ScanImportance(empty, empty) if return_importance else None

    xs, dts = _to_chunks(x_c, chunk_size), _to_chunks(dt_c, chunk_size)  # [B, NC, L, H, P], [B, NC, L, H]
    Bs, Cs = _to_chunks(B_c, chunk_size), _to_chunks(C_c, chunk_size)  # [B, NC, L, H, N]
    n_chunks = xs.shape[1]
    xdt = xs * dts[..., None]
    a = (dts * A_c).permute(0, 3, 1, 2)  # [B, H, NC, L] log-decays
    a_cum = torch.cumsum(a, dim=-1)

    # 1. inside each chunk: y_t += sum_{s<=t} (C_t . B_s) exp(a_{s+1} + ... + a_t) dt_s x_s
    seg = segsum(a)  # [B, H, NC, L, L]; the importance below reuses it
    decay = torch.exp(seg)
    scores = torch.einsum("bclhn,bcshn->bhcls", Cs, Bs) * decay
    y = torch.einsum("bhcls,bcshp->bclhp", scores, xdt)

    # 2. each chunk's own contribution to the state at its end
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # [B, H, NC, L]
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bs, decay_to_end, xdt)  # [B, NC, H, P, N]

    # 3. states between chunks: a loop over chunks keeps memory at one state per chunk
    chunk_decay = torch.exp(a_cum[..., -1])  # [B, H, NC]
    state = x_c.new_zeros(bsz, H, P, N) if initial_state is None else initial_state.to(cd)
    starts = []
    for c in range(n_chunks):
        starts.append(state)
        state = chunk_decay[:, :, c, None, None] * state + chunk_states[:, c]
    starts = torch.stack(starts, dim=1)  # [B, NC, H, P, N] state before each chunk

    # 4. the state before the chunk, decayed to each position, read out by C
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", Cs, starts, torch.exp(a_cum))
    y = y.reshape(bsz, -1, H, P)[:, :T]
    y = apply_skip_and_gate(y, x_c, D, z)

    importance = None
    if return_importance:
        with torch.no_grad():
            importance = _chunked_importance(
                xs.detach(), dts.detach(), Bs.detach(), a.detach(), a_cum.detach(), seg.detach(), starts.detach(), T
            )
    return y.to(out_dtype), state, importance


def _chunked_importance(
    xs: Tensor, dts: Tensor, Bs: Tensor, a: Tensor, a_cum: Tensor, seg: Tensor, starts: Tensor, T: int
) -> ScanImportance:
    """||h_t|| and ||h_t - h_{t-1}|| from the chunked scan's quantities (see module docstring).

    xs [B, NC, L, H, P], dts [B, NC, L, H], Bs [B, NC, L, H, N], a / a_cum [B, H, NC, L],
    seg = segsum(a) [B, H, NC, L, L], starts [B, NC, H, P, N] (state before each chunk).
    Memory O(T * L), like the scan.
    """
    bsz, n_chunks, L, H, _ = xs.shape
    xdt = xs * dts[..., None]
    # r_t = x_t^T h_{t-1} B_t: keys s < t inside the chunk decay by exp(a_{s+1} + ... + a_{t-1})
    before = seg - a[..., None]  # [B, H, NC, L(t), L(s)]
    strict = torch.tril(torch.ones(L, L, dtype=torch.bool, device=xs.device), diagonal=-1)
    decay_prev = torch.exp(before.masked_fill(~strict, -torch.inf))
    scores = torch.einsum("bclhn,bcshn->bhcls", Bs, Bs) * decay_prev
    xx = torch.einsum("bclhp,bcshp->bhcls", xs, xdt)  # x_t . (dt_s x_s)
    r = (scores * xx).sum(-1)  # [B, H, NC, L]
    h_prev_from_start = torch.einsum("bclhn,bchpn->bhclp", Bs, starts) * torch.exp(a_cum - a)[..., None]
    r = r + torch.einsum("bhclp,bclhp->bhcl", h_prev_from_start, xs)
    s = (xs.square().sum(-1) * Bs.square().sum(-1)).permute(0, 3, 1, 2)  # [B, H, NC, L]
    dt = dts.permute(0, 3, 1, 2)  # [B, H, NC, L]
    alpha = torch.exp(a)
    alpha_m1 = torch.expm1(a)

    # n_t = a_t^2 n_{t-1} + u_t is a scalar linear recurrence: solved inside each chunk with the
    # squared decays, started from ||state before the chunk||^2.
    u = 2 * alpha * dt * r + dt.square() * s
    n_start = starts.square().sum((-1, -2)).permute(0, 2, 1)  # [B, H, NC]
    n = torch.einsum("bhcls,bhcs->bhcl", torch.exp(2 * seg), u)
    n = n + torch.exp(2 * a_cum) * n_start[..., None]
    n_prev = torch.cat([n_start[..., None], n[..., :-1]], dim=-1)
    d = alpha_m1.square() * n_prev + 2 * alpha_m1 * dt * r + dt.square() * s

    def per_position(v: Tensor) -> Tensor:  # [B, H, NC, L] -> [B, T, H]
        return v.clamp_min(0).sqrt().permute(0, 2, 3, 1).reshape(bsz, n_chunks * L, H)[:, :T]

    return ScanImportance(per_position(n), per_position(d))
