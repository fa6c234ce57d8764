"""GPU time per kernel of one benchmark step (the benchmarks' --profile options)."""
from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile


def kernel_table(step, *, repeats: int, title: str, rows: int = 30, width: int = 100,
                 activities=(ProfilerActivity.CUDA,)) -> str:
    """Run step once (its kernels compile), then `repeats` times under the profiler; returns the
    table of kernels by self device time, headed by title."""
    step()
    _sync()
    with profile(activities=list(activities)) as prof:
        for _ in range(repeats):
            step()
        _sync()
    table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=rows, max_name_column_width=width)
    return f"\n## {title}\n{table}"


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()
