"""Schedules of a training run: learning rate (linear warm-up, cosine decay) and window length."""
from __future__ import annotations

import math


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def window_length_at(step: int, *, start: int, full: int, warmup_steps: int, multiple: int) -> int:
    """Sequence-length warm-up: the window grows geometrically from `start` to `full`.

    Lengths are rounded down to a multiple of `multiple` (the model's chunk size), so every
    step runs whole chunks; after `warmup_steps` (or when it is 0) the full window is used.
    """
    if warmup_steps <= 0 or step >= warmup_steps or start >= full:
        return full
    length = start * (full / start) ** (step / warmup_steps)
    return max(multiple, min(full, int(length) // multiple * multiple))
