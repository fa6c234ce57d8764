"""Sequence (context) parallelism for a causal `GenossaLM`: one window split across P ranks.

Rank r of a sequence-parallel group holds the tokens [s_r, e_r) (`shard_bounds`: whole query
chunks of attn_chunk, the last rank takes the ragged end). The model streams exactly
(models/streaming.py), so the ranks relay each block's streaming state as a wavefront:

    for block l:  rank r > 0 receives BlockState_l after [0, s_r) from rank r - 1,
                  runs block l on its slice, sends BlockState_l after [0, e_r) to rank r + 1

The state is O(window + chunk + cap) per block (conv inputs, SSM state, the attention cache's
recent keys/values and its top-cap pool), activations are O(n / P) per rank, and rank r runs
block l while rank r - 1 runs block l + 1 (a pipeline: L / (L + P - 1) of the ranks' time is
busy for L blocks). Forward and backward equal the single-process pass up to floating-point
reassociation.

Backward: the relayed tensors that carry gradient (conv inputs, SSM state, cache and pool
keys/values) go through `_SendState` / `_RecvState`, whose backward passes run the transfer in
reverse (the receiver sends the state's gradient back, the sender receives it). Importance,
complexity and the pool's scores/positions only pick keys: no gradient. Each `_SendState`
returns a zero-dim token that `_Join` attaches to the hidden stream before the final norm, so
any loss computed from the outputs reaches every send in backward. The autograd engine runs
ready nodes latest-created first, so rank r receives block l's state gradient after its own
backward of blocks > l and before block l: rank r waits only on rank r + 1's earlier blocks
(acyclic waits, no deadlock). Every rank of the group must call backward.

Loss: each rank's share is normalized by the GLOBAL (group) target weight, so the shares and
their gradients sum to the single-process loss and gradient. A data-parallel engine that
averages gradients over all W = D * P ranks therefore needs the share scaled by P
(`SequenceParallelObjective(grad_scale=P)`).

Data contract: tokens [B, n] int64 (genossa alphabet), the same whole window on every rank of
the group; loss weights [B, n] as in `GenossaLM.compute_loss`; outputs are the rank's slice.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from genossa.models.hybrid import BlockState, GenossaLM, ModelOutput
from genossa.models.losses import align_targets, lm_loss
from genossa.models.matryoshka import mrl_loss
from genossa.modules import AttentionCache, MixerState
from genossa.ops.sparse_attention import SelectionState
from genossa.parallel.comm import recv_tensors, send_tensors
from genossa.sequence.alphabet import NUM_BASE_TOKENS


def shard_bounds(length: int, world: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) of each of `world` ranks over `length` tokens: whole chunks of `chunk`,
    as even as possible (earlier ranks one chunk more), the last rank ending at `length`."""
    n_chunks = -(-length // chunk)
    if n_chunks < world:
        raise ValueError(f"{length} tokens make {n_chunks} chunks of {chunk}: too few for {world} ranks")
    per, extra = divmod(n_chunks, world)
    bounds, start = [], 0
    for r in range(world):
        end = min(length, start + (per + (r < extra)) * chunk)
        bounds.append((start, end))
        start = end
    return bounds


def _n_diff(block: nn.Module) -> int:
    """Leading entries of the block's flattened state that carry gradient (see `_flatten`)."""
    return 8 if getattr(block, "attention", None) is not None else 2


def _flatten(state: BlockState) -> list[Tensor]:
    m, a = state.mixer, state.attention
    if a is None:  # a block without attention (Mamba2-only ablation) carries the mixer state only
        return [m.conv, m.ssm]
    return [m.conv, m.ssm, a.k, a.kb, a.v, a.pool_k, a.pool_kb, a.pool_v, a.importance, a.complexity, a.pool.score,
            a.pool.pos]


def _unflatten(t: tuple[Tensor, ...], pos: int) -> BlockState:
    if len(t) == 2:
        return BlockState(mixer=MixerState(conv=t[0], ssm=t[1]), attention=None)
    conv, ssm, k, kb, v, pool_k, pool_kb, pool_v, importance, complexity, score, pool_pos = t
    return BlockState(
        mixer=MixerState(conv=conv, ssm=ssm),
        attention=AttentionCache(pos=pos, k=k, kb=kb, v=v, importance=importance, complexity=complexity,
                                 pool=SelectionState(score=score, pos=pool_pos), pool_k=pool_k, pool_kb=pool_kb,
                                 pool_v=pool_v),
    )


class _SendState(torch.autograd.Function):
    """Forward: send a flattened BlockState to `dst`. Backward: receive its gradient from `dst`."""

    @staticmethod
    def forward(ctx, dst: int, group, n_diff: int, anchor: Tensor | None, *tensors: Tensor) -> Tensor:
        send_tensors(tensors, dst, group)
        ctx.dst, ctx.group, ctx.device = dst, group, tensors[0].device
        ctx.n, ctx.n_diff = len(tensors), n_diff
        return tensors[0].new_zeros(())  # the token `_Join` hangs on the outputs

    @staticmethod
    def backward(ctx, _token_grad: Tensor):
        grads = recv_tensors(ctx.dst, ctx.device, ctx.group)
        return None, None, None, None, *grads, *([None] * (ctx.n - ctx.n_diff))


class _RecvState(torch.autograd.Function):
    """Forward: receive a flattened BlockState from `src`. Backward: send its gradient to `src`.

    `anchor` is a leaf that requires grad whenever grad mode is on, so that the receiving rank
    takes part in backward even where nothing it received would otherwise require grad."""

    @staticmethod
    def forward(ctx, src: int, group, n_diff: int, device: torch.device, anchor: Tensor | None) -> tuple[Tensor, ...]:
        tensors = recv_tensors(src, device, group)
        ctx.mark_non_differentiable(*tensors[n_diff:])
        ctx.src, ctx.group, ctx.n_diff = src, group, n_diff
        return tuple(tensors)

    @staticmethod
    def backward(ctx, *grads: Tensor):
        send_tensors([g.contiguous() for g in grads[: ctx.n_diff]], ctx.src, ctx.group)
        return None, None, None, None, None


class _Join(torch.autograd.Function):
    """Identity on x that makes the send tokens part of every loss built from x (gradient 0)."""

    @staticmethod
    def forward(ctx, x: Tensor, *tokens: Tensor) -> Tensor:
        ctx.token_meta = [(t.dtype, t.device) for t in tokens]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, *(torch.zeros((), dtype=d, device=dev) for d, dev in ctx.token_meta)


def _group_rank_world(group: dist.ProcessGroup | None) -> tuple[int, int]:
    if group is None and not dist.is_initialized():
        return 0, 1  # one process: the plain forward, through the same code
    return dist.get_rank(group), dist.get_world_size(group)


def sequence_parallel_forward(model: GenossaLM, tokens: Tensor, *, start: int,
                              group: dist.ProcessGroup | None = None) -> ModelOutput:
    """This rank's slice of the one-shot forward pass: tokens [B, T_r] at positions
    [start, start + T_r) of the window, the ranks of `group` holding consecutive slices in rank
    order (`shard_bounds`). Returns logits/hidden/embeddings [B, T_r, .] (state None).

    Collective over `group`: every rank calls it, in the same grad mode; with grad, every rank
    must then run backward through a loss built from its outputs.
    """
    cfg = model.config
    if not cfg.causal:
        raise ValueError("sequence parallelism relays the streaming state: it needs a causal model")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")
    if start % cfg.attn_chunk:
        raise ValueError(f"a slice must start at a multiple of attn_chunk = {cfg.attn_chunk}, got {start}")
    rank, world = _group_rank_world(group)
    if (rank == 0) != (start == 0):
        raise ValueError(f"rank {rank} of the sequence-parallel group cannot start at position {start}")
    device = tokens.device
    anchor = torch.zeros((), device=device, requires_grad=True) if torch.is_grad_enabled() else None
    x = model.embedding(tokens.long())  # [B, T_r, d_model]
    sent = []
    for i, block in enumerate(model.blocks):
        n_diff = _n_diff(block)
        state = _unflatten(_RecvState.apply(rank - 1, group, n_diff, device, anchor), start) if rank > 0 else None
        if model.recomputes_block(i):
            x, new_state = torch.utils.checkpoint.checkpoint(block, x, state, True, use_reentrant=False)
        else:
            x, new_state = block(x, state, return_state=True)
        if rank < world - 1:
            sent.append(_SendState.apply(rank + 1, group, n_diff, anchor, *_flatten(new_state)))
    if sent:
        x = _Join.apply(x, *sent)
    emb = model.norm_f(x)
    return ModelOutput(model.lm_head(emb), x, emb, None)


class SequenceParallelLoss(NamedTuple):
    loss: Tensor
    """This rank's share: the shares (and their gradients) sum to the window's loss over ranks."""
    value: Tensor
    """The window's loss (no gradient), the same on every rank; = `GenossaLM.compute_loss().loss`."""
    bits_per_base: Tensor
    """The window's full-width bits per base (no gradient), the same on every rank."""
    output: ModelOutput
    """This rank's slice of the outputs."""
    bounds: tuple[int, int]
    """[start, end) of this rank's slice."""


def sequence_parallel_loss(model: GenossaLM, tokens: Tensor, loss_weights: Tensor | None = None, *,
                           group: dist.ProcessGroup | None = None, matryoshka: bool = True) -> SequenceParallelLoss:
    """`GenossaLM.compute_loss` (causal) of the window tokens [B, n], split over `group`.

    Every rank passes the same tokens (and loss_weights [B, n]); each runs its slice, predicts
    the next base of each of its positions (the last rank's last position has none) and
    returns its share of the loss; call backward on every rank. Collective over `group`.
    """
    rank, world = _group_rank_world(group)
    n = tokens.shape[1]
    start, end = shard_bounds(n, world, model.config.attn_chunk)[rank]
    out = sequence_parallel_forward(model, tokens[:, start:end], start=start, group=group)
    stop = min(end, n - 1)  # positions [start, stop) have a target, tokens[t + 1]
    targets = tokens[:, start + 1 : stop + 1]
    weights = loss_weights[:, start + 1 : stop + 1] if loss_weights is not None else None
    emb, logits = out.embeddings[:, : stop - start], out.logits[:, : stop - start]
    # targets are passed as already aligned (causal=False): the shift crosses the rank boundary
    kw = dict(weights=weights, causal=False, targets=targets)
    if matryoshka:
        local, _ = mrl_loss(emb, model.lm_head.weight, model.lm_head.bias, targets, model.config.mrl_dims, **kw)
    else:
        local = lm_loss(logits, targets, **kw)
    with torch.no_grad():
        _, _, w = align_targets(logits, targets, weights, causal=False, targets=targets)
        ce = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none")
        is_base = ((targets < NUM_BASE_TOKENS) & (w > 0)).flatten().double()
        # local losses are means over the local weight: scale by it to sum over ranks
        stats = torch.stack([w.sum().double(), local.detach().double() * w.sum(), (ce * is_base).sum(), is_base.sum()])
        if world > 1:
            dist.all_reduce(stats, group=group)
    total_w = stats[0].clamp_min(1e-12)
    share = local * (w.sum() / total_w).to(local.dtype)
    value = (stats[1] / total_w).to(local.dtype)
    bpb = (stats[2] / stats[3].clamp_min(1e-12) / math.log(2)).float()
    return SequenceParallelLoss(share, value, bpb, out, (start, end))


class SequenceParallelObjective(nn.Module):
    """The loss module a DeepSpeed engine wraps (as train.objective.TrainingObjective):
    forward(tokens [B, n], weights [B, n]) -> (loss, bits per base, number of targets), the
    whole window on every rank of the sequence-parallel group.

    The returned loss has the window's loss as its value (for logging, identical on the
    group's ranks) and grad_scale times this rank's share as its gradient: an engine that
    averages gradients over all D * P ranks gets the mean over the D windows of the full
    gradient with grad_scale = P.
    """

    def __init__(self, lm: GenossaLM, group: dist.ProcessGroup | None = None, grad_scale: float = 1.0):
        super().__init__()
        self.lm = lm
        self.group = group
        self.grad_scale = grad_scale

    def forward(self, tokens: Tensor, weights: Tensor):
        out = sequence_parallel_loss(self.lm, tokens, weights, group=self.group)
        scaled = out.loss * self.grad_scale
        loss = scaled + (out.value - scaled).detach()  # value: the window's loss; gradient: the scaled share
        targets = (weights[:, 1:] > 0).sum()  # causal: position t predicts t + 1
        return loss, out.bits_per_base, targets.to(torch.float32)


def sequence_parallel_groups(size: int) -> dist.ProcessGroup:
    """Split the default group into consecutive groups of `size` ranks; return this rank's.

    Collective: every rank calls it (each group is created on all ranks, in the same order).
    The data-parallel replica of a rank is rank // size.
    """
    world = dist.get_world_size()
    if size < 1 or world % size:
        raise ValueError(f"sequence_parallel = {size} must divide the world size {world}")
    mine = None
    for first in range(0, world, size):
        group = dist.new_group(list(range(first, first + size)))
        if first <= dist.get_rank() < first + size:
            mine = group
    return mine
