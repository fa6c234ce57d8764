"""`GenossaLM`: token embedding, N hybrid blocks, final RMSNorm, LM head.

One block (pre-norm, residual):

    h = norm1(x)
    m = Mamba2Mixer(h)                               multi-scale SSD, importance per scale
    a = ScanSparseAttention(h, m.scan, m.norm, m.change)
    x = x + FusionGate(h, m.out, a)                  g * ssm + (1 - g) * attn, g from h
    x = x + SwiGLU(norm2(x))

With config.attention = False (the Mamba2-only ablation) a block is x = x + m.out, then the MLP:
no attention and no fusion gate parameters, and BlockState.attention is None.

Data contract: tokens [B, T] int64 in the genossa alphabet (A=0 C=1 G=2 T=3 N=4 PAD=5 BOS=6
EOS=7 MASK=8); logits [B, T, V]; hidden (last residual stream) and embeddings (after the final
norm; Matryoshka prefixes are its leading channels) [B, T, d_model].

Causal mode can stream: forward(tokens, state=..., return_state=True) continues a sequence
(see streaming.py). A directory written by `save_pretrained` holds config.json and
model.safetensors (no pickle).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import NamedTuple

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from genossa.models.config import ModelConfig
from genossa.models.losses import bits_per_base, lm_loss
from genossa.models.matryoshka import mrl_loss, truncated_logits
from genossa.modules import (
    AttentionCache,
    FusionGate,
    Mamba2Mixer,
    MixerState,
    RMSNorm,
    ScanSparseAttention,
    SwiGLU,
)
from genossa.sequence.alphabet import PAD

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class BlockState(NamedTuple):
    mixer: MixerState
    attention: AttentionCache | None
    """None in a block without attention (config.attention = False)."""


class ModelState(NamedTuple):
    """Streaming state of a causal model after `pos` tokens (one entry per block)."""

    pos: int
    blocks: tuple[BlockState, ...]


def _map_tensors(fn, *states):
    """fn applied to the matching tensors of states of one structure (ints: the first's)."""
    first = states[0]
    if isinstance(first, Tensor):
        return fn(*states)
    if isinstance(first, tuple):
        items = [_map_tensors(fn, *parts) for parts in zip(*states)]
        return type(first)(*items) if hasattr(first, "_fields") else tuple(items)
    return first


def select_state(state: ModelState, index: Tensor) -> ModelState:
    """Rows `index` of a streaming state: a batch continuing those rows' streams."""
    return _map_tensors(lambda t: t.index_select(0, index), state)


def state_rows(state: ModelState, start: int, length: int) -> ModelState:
    """Rows [start, start + length) of a state as views (no copy)."""
    return _map_tensors(lambda t: t.narrow(0, start, length), state)


def cat_states(states: typing.Sequence[ModelState]) -> ModelState:
    """The rows of several states at one position, as one batch."""
    if len({s.pos for s in states}) > 1:
        raise ValueError(f"cat_states: states at different positions {sorted({s.pos for s in states})}")
    return _map_tensors(lambda *ts: torch.cat(ts, 0), *states)


def shift_state(state: ModelState, pos: int) -> ModelState:
    """The same stream's state as if it had started `pos - state.pos` tokens later (a multiple of
    attn_chunk, >= 0): every position it records moves by that much. Continuing it gives the
    same outputs where `GenossaLM.state_can_shift(state.pos)`, so streams cut at different points
    can continue side by side in one batch."""
    delta = pos - state.pos
    if delta == 0:
        return state
    if delta < 0:
        raise ValueError(f"shift_state moves a state to a later position only ({state.pos} -> {pos})")
    blocks = []
    for block in state.blocks:
        cache = block.attention
        if cache is not None:
            moved = torch.where(cache.pool.pos >= 0, cache.pool.pos + delta, cache.pool.pos)  # -1: empty slot
            cache = cache._replace(pos=cache.pos + delta, pool=cache.pool._replace(pos=moved))
        blocks.append(block._replace(attention=cache))
    return ModelState(pos, tuple(blocks))


class ModelOutput(NamedTuple):
    logits: Tensor
    """[B, T, V] next-base (causal) or masked-base (bidirectional) logits at full width."""
    hidden: Tensor
    """[B, T, d_model] the residual stream after the last block."""
    embeddings: Tensor
    """[B, T, d_model] final-normed hidden: the Matryoshka embeddings (prefixes = leading channels)."""
    state: ModelState | None
    """The state after the last token, with return_state."""


class LossOutput(NamedTuple):
    loss: Tensor
    """The training loss: mean over Matryoshka prefixes of the (weighted) cross-entropy."""
    per_dim: dict[int, Tensor]
    """{prefix: its cross-entropy in nats}."""
    bits_per_base: Tensor
    """Full-width bits per base (no gradient)."""
    output: ModelOutput


class HybridBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.norm_eps, impl=cfg.kernels)
        self.mixer = Mamba2Mixer(
            cfg.d_model, cfg.ssm_heads, cfg.ssm_head_dim, cfg.ssm_d_state, n_groups=cfg.ssm_groups,
            d_conv=cfg.ssm_conv, chunk_size=cfg.ssm_chunk, scales=cfg.ssm_scales, bidirectional=not cfg.causal,
            eps=cfg.norm_eps, impl=cfg.kernels,
        )
        self.attention = ScanSparseAttention(
            cfg.d_model, cfg.ssm_inner, cfg.attn_heads, cfg.attn_head_dim, summary_dim=cfg.scan_summary_dim,
            window=cfg.attn_window, chunk_size=cfg.attn_chunk, topk_base=cfg.topk_base,
            topk_alpha=cfg.topk_alpha, topk_cap=cfg.topk_cap, causal=cfg.causal, bias_init=cfg.scan_bias_init,
            selection=cfg.selection, impl=cfg.kernels,
        ) if cfg.attention else None
        self.fusion = FusionGate(cfg.d_model, impl=cfg.kernels) if cfg.attention else None
        self.norm2 = RMSNorm(cfg.d_model, cfg.norm_eps, impl=cfg.kernels) if cfg.mlp_ratio > 0 else None
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_ratio, impl=cfg.kernels) if cfg.mlp_ratio > 0 else None

    def forward(self, x: Tensor, state: BlockState | None = None, return_state: bool = False):
        h = self.norm1(x)
        m = self.mixer(h, state.mixer if state is not None else None)
        if self.attention is None:
            x, cache = x + m.out, None
        else:
            a = self.attention(h, m.scan, m.norm, m.change, cache=state.attention if state is not None else None,
                               return_cache=return_state)
            if return_state:
                a, cache = a
            x = self.fusion.add_to(x, h, m.out, a)
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return (x, BlockState(m.state, cache)) if return_state else x


class GenossaLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(HybridBlock(config) for _ in range(config.n_layers))
        self.norm_f = RMSNorm(config.d_model, config.norm_eps, impl=config.kernels)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.gradient_checkpointing: bool | int = False
        """Recompute blocks' activations in backward (training memory for time): True = every
        block, an int k = the first k blocks (the rest keep theirs; fewer recomputed FLOPs)."""
        self.reset_parameters()
        if config.tie_embeddings:
            self.lm_head.weight = self.embedding.weight

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std) for linear and embedding weights, output projections scaled by
        1/sqrt(2 n_layers) (two residual writes per block, GPT-2); biases zero. The mixer's dt, A,
        D and conv keep their own init."""
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                scaled = name.endswith(("out_proj", "mlp.down"))
                nn.init.normal_(module.weight, 0.0, std / math.sqrt(2 * self.config.n_layers) if scaled else std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor, state: ModelState | None = None, return_state: bool = False) -> ModelOutput:
        """tokens [B, T] -> ModelOutput. `state` continues a sequence (causal, streaming)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")
        if (state is not None or return_state) and not self.config.causal:
            raise ValueError("streaming needs a causal model (config.causal = True)")
        if state is not None and state.pos % self.config.attn_chunk:
            raise ValueError(
                f"cannot continue after {state.pos} tokens: every chunk but the last must be a multiple "
                f"of attn_chunk = {self.config.attn_chunk}"
            )
        x = self.embedding(tokens.long())
        new_states = []
        for i, block in enumerate(self.blocks):
            if return_state:
                x, bs = block(x, state.blocks[i] if state is not None else None, return_state=True)
                new_states.append(bs)
            elif self.recomputes_block(i):
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x, state.blocks[i] if state is not None else None)
        emb = self.norm_f(x)
        logits = self.lm_head(emb)
        new_state = None
        if return_state:
            new_state = ModelState((state.pos if state is not None else 0) + tokens.shape[1], tuple(new_states))
        return ModelOutput(logits, x, emb, new_state)

    def recomputes_block(self, i: int) -> bool:
        """Whether block i runs under activation checkpointing in this forward."""
        if not (self.training and torch.is_grad_enabled()):
            return False
        k = self.gradient_checkpointing
        return i < (len(self.blocks) if k is True else int(k))

    def compute_loss(self, tokens: Tensor, *, loss_weights: Tensor | None = None, targets: Tensor | None = None,
                     matryoshka: bool = True) -> LossOutput:
        """Training loss on tokens [B, T].

        Causal: next-base prediction; bidirectional: predict `targets` [B, T] (see
        losses.mask_tokens). loss_weights [B, T] weight each target (soft-masked bases, masked
        positions); PAD targets never count. With matryoshka, the loss averages every prefix in
        config.mrl_dims (shared truncated head); otherwise it is the full-width loss.
        """
        out = self(tokens)
        kw = dict(weights=loss_weights, causal=self.config.causal, targets=targets)
        if matryoshka:
            loss, per_dim = mrl_loss(out.embeddings, self.lm_head.weight, self.lm_head.bias, tokens,
                                     self.config.mrl_dims, **kw)
        else:
            loss = lm_loss(out.logits, tokens, loss_weights, causal=self.config.causal, targets=targets)
            per_dim = {self.config.d_model: loss}
        bpb = bits_per_base(out.logits, tokens, causal=self.config.causal, targets=targets, weights=loss_weights)
        return LossOutput(loss, per_dim, bpb, out)

    def prefix_logits(self, embeddings: Tensor, dim: int) -> Tensor:
        """Logits [B, T, V] from the Matryoshka prefix embeddings[..., :dim]."""
        self._check_dim(dim)
        return truncated_logits(embeddings, self.lm_head.weight, self.lm_head.bias, dim)

    def embed(self, tokens: Tensor, dim: int | None = None, pool: str | None = None) -> Tensor:
        """Matryoshka embeddings at prefix `dim` (default: full width).

        pool=None: [B, T, dim] per position; "mean": [B, dim] mean over non-PAD positions.
        Prefixes in config.mrl_dims are trained; any other dim is a plain truncation.
        """
        dim = self.config.d_model if dim is None else dim
        self._check_dim(dim)
        emb = self(tokens).embeddings[..., :dim]
        if pool is None:
            return emb
        if pool == "mean":
            keep = (tokens != PAD).unsqueeze(-1).to(emb.dtype)
            return (emb * keep).sum(1) / keep.sum(1).clamp_min(1)
        raise ValueError(f"pool must be None or 'mean', got {pool!r}")

    def state_can_shift(self, pos: int) -> bool:
        """Whether a streaming state after `pos` tokens may be moved to a later position with
        `shift_state`: the model sees positions only relative to each other (it has no positional
        encoding; only the 'random' / 'strided' selection ablations rank by absolute position),
        and every attention cache already holds its full window + chunk of recent keys."""
        cfg = self.config
        if not cfg.attention:
            return True
        return cfg.selection in ("scan", "change") and pos >= cfg.attn_window + cfg.attn_chunk

    def _check_dim(self, dim: int) -> None:
        if not 0 < dim <= self.config.d_model:
            raise ValueError(f"dim must be in [1, {self.config.d_model}], got {dim}")

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of distinct parameters (a tied head counts once)."""
        params = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in params.values())
        if exclude_embeddings:
            n -= self.embedding.weight.numel()
        return n

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json and model.safetensors into `directory` (created if needed).

        Tensors are copied out first: under DeepSpeed ZeRO the parameters can be views into
        one flat buffer, which safetensors rightly refuses to save as it stands. A tied head
        is stored once (as the embedding).
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(config_to_json(self.config), indent=2) + "\n")
        state = {
            name: tensor.detach().to("cpu").contiguous().clone()
            for name, tensor in self.state_dict().items()
            if not (self.config.tie_embeddings and name == _TIED_HEAD)
        }
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "GenossaLM":
        """Load a directory written by `save_pretrained` (strictly: every weight must match)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config = config_from_json(json.loads((directory / CONFIG_FILE).read_text()))
        with _no_random_init():  # the weights are overwritten next
            model = cls(config)
        state = load_file(str(directory / WEIGHTS_FILE), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        allowed_missing = [_TIED_HEAD] if config.tie_embeddings else []
        if unexpected or set(missing) - set(allowed_missing):
            raise ValueError(
                f"{directory / WEIGHTS_FILE}: weights do not match the config "
                f"(missing {sorted(set(missing) - set(allowed_missing))}, unexpected {sorted(unexpected)})"
            )
        return model.to(map_location)


_TIED_HEAD = "lm_head.weight"

_INIT_FUNCTIONS = ("uniform_", "normal_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_", "zeros_", "ones_")


@contextlib.contextmanager
def _no_random_init():
    """Module constructors leave their weights as allocated (torch.nn.init's fills are no-ops):
    a model about to load its weights skips 0.4 s of random init (small preset, CPU). Building it
    on the meta device instead costs more the first time in a process (1.4 s: the meta kernels'
    imports)."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def config_to_json(config: ModelConfig) -> dict:
    """Plain values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def config_from_json(values: dict) -> ModelConfig:
    """ModelConfig from `config_to_json` values; unknown keys are an error."""
    hints = typing.get_type_hints(ModelConfig)
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
