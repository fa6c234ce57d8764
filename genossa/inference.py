"""Loading an exported model for inference (`genossa embed`, `genossa score`).

An exported model is a directory with `config.json` and `model.safetensors`, as written by
`GenossaLM.save_pretrained` (and by `genossa train` into `<run>/model`). Nothing is unpickled.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from genossa.errors import GenossaError
from genossa.models.hybrid import CONFIG_FILE, WEIGHTS_FILE, GenossaLM


@dataclass
class LoadedModel:
    model: GenossaLM
    directory: Path
    device: torch.device
    weights_sha256: str
    """sha256 of model.safetensors: the model's identity in outputs."""

    @property
    def identity(self) -> dict:
        """What outputs record about the model that made them."""
        cfg = self.model.config
        return {
            "checkpoint": str(self.directory.resolve()),
            "weights_sha256": self.weights_sha256,
            "d_model": cfg.d_model,
            "n_layers": cfg.n_layers,
            "causal": cfg.causal,
            "matryoshka_dims": list(cfg.mrl_dims),
        }


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenossaError("device cuda was asked for (--device or train.device), but no CUDA device is available")
    return device


PRECISIONS = ("auto", "fp32", "bf16", "bf16-weights")
"""fp32; bf16: autocast (fp32 weights, 16-bit matrix products); bf16-weights: the weights cast to
bf16 as well (no per-call casts, a 16-bit residual stream): on an H200 the base preset embedded 10%
faster and the small preset scored 12% faster, and the bundled model's LLRs kept a Pearson
correlation of 0.9946 with fp32 (autocast: the same) and its pooled embeddings a cosine of 1.0 to
6 places (benchmarks/RESULTS.md, session 7)."""


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 autocast on CUDA and fp32 on the CPU; the bf16 modes on the CPU are an error."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise GenossaError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision.startswith("bf16") and device.type != "cuda":
        raise GenossaError(f"--precision {precision} needs a CUDA device (use fp32 on the CPU)")
    return precision


def autocast(device: torch.device, precision: str):
    """The forward passes' autocast context for a resolved precision."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))


def for_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The loaded model as a resolved precision runs it: cast to bf16 for bf16-weights."""
    return model.to(torch.bfloat16) if precision == "bf16-weights" else model


def load_model(directory: str | Path, device: str | torch.device = "auto") -> LoadedModel:
    """Load an exported model for inference (eval mode, no gradients) onto `device`."""
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise GenossaError(
                f"{directory}: not an exported genossa model (no {name}); pass a training run's model/ folder"
            )
    target = resolve_device(device)
    try:
        model = GenossaLM.from_pretrained(directory, map_location="cpu")
    except (ValueError, OSError, RuntimeError, SafetensorError) as err:
        raise GenossaError(f"{directory}: cannot load the model ({' '.join(str(err).split())})") from None
    model = model.to(target).eval().requires_grad_(False)
    digest = hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()
    return LoadedModel(model=model, directory=directory, device=target, weights_sha256=digest)
