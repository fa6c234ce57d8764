"""What one training step computes: the loss module DeepSpeed wraps, held-out bits per base,
and the FLOP count behind model FLOPs utilization.

The engine wraps `TrainingObjective`, whose forward returns the loss, so every parameter the
loss touches (the Matryoshka head reads the tied embedding matrix outside its module) is
gathered by ZeRO-3 inside the engine's forward.
"""
from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache

import torch
from torch import Tensor, nn

from genossa.models.config import ModelConfig
from genossa.models.hybrid import GenossaLM, config_from_json, config_to_json


class TrainingObjective(nn.Module):
    """forward(tokens [B, T], weights [B, T]) -> (MRL loss, bits per base, number of targets)."""

    def __init__(self, lm: GenossaLM):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: Tensor, weights: Tensor):
        out = self.lm.compute_loss(tokens, loss_weights=weights)
        targets = (weights[:, 1:] > 0).sum()  # causal: position t predicts t+1
        return out.loss, out.bits_per_base.detach(), targets.to(torch.float32)


def register_for_zero3(objective: TrainingObjective) -> None:
    """Tell ZeRO-3 that the loss reads the head weight outside the head's own forward."""
    import deepspeed

    deepspeed.zero.register_external_parameter(objective, objective.lm.lm_head.weight)


@torch.no_grad()
def evaluate_bits_per_base(engine, eval_data, max_windows: int, *, device: torch.device) -> float:
    """Mean held-out bits per base over the first `max_windows` windows (forward strand, in order)."""
    from torch.utils.data import DataLoader

    dataset = type(eval_data)(replace(eval_data.config, shuffle=False, rc_prob=0.0), split="eval", rank=0, world_size=1)
    was_training = engine.training
    engine.eval()
    total_bits, total_targets = 0.0, 0.0
    for i, batch in enumerate(DataLoader(dataset, batch_size=1, num_workers=0)):
        if i >= max_windows:
            break
        tokens = batch["tokens"].to(device)
        weights = batch["valid"].float().to(device)
        _, bpb, targets = engine(tokens, weights)
        total_bits += bpb.item() * targets.item()
        total_targets += targets.item()
    engine.train(was_training)
    return total_bits / max(total_targets, 1.0)


def flops_per_token(config: ModelConfig, length: int) -> float:
    """Model FLOPs per token of one training step (forward + backward = 3x forward).

    Dense layers: 2 FLOPs per weight. SSD (chunk Q, state N, head dim P): the intra-chunk
    C B^T and its product with x (2QN + 2QP) plus the chunk-state write and read (4PN) per
    head. Sparse attention: QK^T and PV over the keys a query sees: its window, about half a
    chunk of its own chunk, and at most topk_cap selected keys. The Matryoshka head runs
    once per prefix.
    """
    Q, N, P = min(config.ssm_chunk, length), config.ssm_d_state, config.ssm_head_dim
    keys = min(length, config.attn_window + config.attn_chunk // 2 + config.topk_cap)
    ssd = config.ssm_heads * (2 * Q * N + 2 * Q * P + 4 * P * N)
    attention = 2 * 2 * config.attn_heads * config.attn_head_dim * keys if config.attention else 0
    per_layer = 2 * _matrix_params_per_block(json.dumps(config_to_json(config), sort_keys=True)) + ssd + attention
    head = 2 * config.d_model * config.vocab_size * len(config.mrl_dims)
    return 3.0 * (config.n_layers * per_layer + head)


@lru_cache(maxsize=8)
def _matrix_params_per_block(config_json: str) -> int:
    config = config_from_json(json.loads(config_json))
    with torch.device("meta"):
        block = GenossaLM(replace(config, n_layers=1)).blocks[0]
    return sum(p.numel() for p in block.parameters() if p.ndim == 2)
