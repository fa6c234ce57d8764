"""Streaming inference: a long sequence processed chunk by chunk, equal to the one-shot pass.

Each block carries its conv inputs and SSM state (mixer) and its attention cache (the last
window + chunk keys and the running top-cap pool of selectable keys, see
modules/scan_attention.py), so memory per call is set by the chunk length, not by the length of
the sequence. Causal models only; every chunk but the last must be a multiple of
config.attn_chunk, so that query chunks and selection steps line up with the one-shot pass.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from genossa.models.hybrid import GenossaLM, ModelOutput, ModelState


def check_chunk_length(model: GenossaLM, chunk_len: int) -> None:
    step = model.config.attn_chunk
    if chunk_len <= 0 or chunk_len % step:
        raise ValueError(f"chunk_len must be a positive multiple of attn_chunk = {step}, got {chunk_len}")


@torch.no_grad()
def iter_stream(model: GenossaLM, chunks: Iterable[Tensor], state: ModelState | None = None) -> Iterator[ModelOutput]:
    """Outputs chunk by chunk for token chunks [B, L_i] of one sequence (state in each output)."""
    for chunk in chunks:
        out = model(chunk, state=state, return_state=True)
        state = out.state
        yield out


@torch.no_grad()
def stream(model: GenossaLM, tokens: Tensor, chunk_len: int, state: ModelState | None = None) -> ModelOutput:
    """The forward pass over tokens [B, T] run as chunks of chunk_len tokens; outputs concatenated."""
    check_chunk_length(model, chunk_len)
    outs = list(iter_stream(model, tokens.split(chunk_len, dim=1), state))
    return ModelOutput(
        torch.cat([o.logits for o in outs], 1),
        torch.cat([o.hidden for o in outs], 1),
        torch.cat([o.embeddings for o in outs], 1),
        outs[-1].state,
    )
