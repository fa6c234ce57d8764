"""Run observability: JSONL metrics, TensorBoard scalars, and a PNG of the loss curves.

Every record is one JSON object per line in `metrics.jsonl` (`{"step": .., "split": "train",
"loss": .., "bits_per_base": .., ...}`), so a run can be analysed without TensorBoard.
Only rank 0 writes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_FILENAME = "metrics.jsonl"
PLOT_FILENAME = "loss_curves.png"


class MetricsLogger:
    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._jsonl = open(self.run_dir / METRICS_FILENAME, "a") if enabled else None
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, step: int, split: str, **values: float) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, **{k: _plain(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _plain(value):
    try:
        return float(value) if not isinstance(value, (str, bool, int)) else value
    except (TypeError, ValueError):
        return str(value)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILENAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curves(run_dir: str | Path) -> Path | None:
    """Write `loss_curves.png` (train and held-out bits per base against step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    if not records:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for split, style in (("train", "-"), ("eval", "o-")):
        points = [(r["step"], r["bits_per_base"]) for r in records if r["split"] == split and "bits_per_base" in r]
        if points:
            steps, bpb = zip(*points)
            ax.plot(steps, bpb, style, label=f"{split} bits/base", markersize=3)
    ax.axhline(2.0, color="grey", linestyle=":", label="uniform model (2 bits)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("bits per base")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(run_dir) / PLOT_FILENAME
    fig.savefig(out)
    plt.close(fig)
    return out
