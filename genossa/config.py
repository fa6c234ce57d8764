"""Typed configuration: dataclass schemas and a strict YAML loader.

A run is described by one `GenossaConfig` with the sections `data`, `model`, `train`,
`embed` and `score`. YAML only serializes it. Loading is strict: an unknown key, a value of
the wrong type (`"true,"` is a str, not a bool) or an out-of-range value is a ConfigError
naming the file and the dotted key. The resolved config is written into every output
directory (`save_config`), so a run can be reproduced from its folder alone.

Presets ship in the package (`configs/*.yaml`, installed as `genossa.configs`): pass a preset
name (`tiny`, `small`, `base`, `large`) or a path to `load_config`.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from genossa.data.config import DataConfig
from genossa.errors import ConfigError
from genossa.models.config import ModelConfig

CONFIG_FILENAME = "config.yaml"


@dataclass
class TrainConfig:
    """How a model is trained (`genossa train`)."""

    steps: int = 1000
    """Optimizer steps in the whole run."""
    micro_batch_size: int = 1
    """Windows per device per forward pass."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 3e-4
    """Peak learning rate (AdamW), reached after `warmup_steps`."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr * min_lr_ratio."""
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.95)
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables it."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    zero_stage: int = 0
    """DeepSpeed ZeRO stage 0-3."""
    activation_checkpointing: Union[bool, int] = False
    """Recompute blocks' activations in backward (memory for time): true = every block, an
    integer k = the first k blocks only (recomputes k/n_layers of the forward; the other blocks
    keep their activations: the smallest k whose peak memory fits the GPU is the fastest)."""
    sequence_parallel: int = 1
    """Ranks that split one window (genossa.parallel.sequence); must divide the number of
    processes, which form world / sequence_parallel data-parallel replicas."""
    seq_len_warmup_steps: int = 0
    """Grow the window from `seq_len_warmup_start` to data.window over this many steps; 0 = off."""
    seq_len_warmup_start: int = 4096
    soft_mask_weight: float = 1.0
    """Loss weight of soft-masked (lowercase) bases; 1 = no down-weighting."""
    eval_every: int = 200
    eval_windows: int = 8
    """Held-out windows scored at each evaluation."""
    checkpoint_every: int = 500
    keep_last: int = 3
    """Checkpoints kept on disk (older ones are deleted)."""
    log_every: int = 10
    profile_step: int = 0
    """Record this step (1-based; 0 = none) under torch.profiler and write where its time went
    (top GPU kernels, top CPU-side ops, the step's wall time) to profile.txt in the run directory."""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        _positive(self, "steps", "micro_batch_size", "grad_accum", "eval_every",
                  "checkpoint_every", "keep_last", "log_every", "eval_windows", "seq_len_warmup_start",
                  "sequence_parallel")
        _nonnegative(self, "warmup_steps", "weight_decay", "grad_clip", "seq_len_warmup_steps",
                     "soft_mask_weight", "profile_step")
        if not self.lr > 0:
            raise ValueError("lr: must be > 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("min_lr_ratio: must be in [0, 1]")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError("betas: must be two numbers in [0, 1)")
        if not isinstance(self.activation_checkpointing, bool) and self.activation_checkpointing < 0:
            raise ValueError("activation_checkpointing: must be true, false or a number of blocks >= 0")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError("zero_stage: must be 0, 1, 2 or 3")
        if self.sequence_parallel > 1 and self.zero_stage > 1:
            # ZeRO-2/3 communicate inside backward/forward, where the ranks of a window wait on each other
            raise ValueError("sequence_parallel: needs zero_stage 0 or 1")


@dataclass
class EmbedConfig:
    """How embeddings are exported (`genossa embed`, genossa.embed)."""

    window: int = 131072
    """Bases per window; each window gets one pooled embedding."""
    stride: Optional[int] = None
    """Distance between window starts; None = window (no overlap)."""
    last: Literal["drop", "pad", "end_aligned"] = "pad"
    """The tail no full window reaches (genossa.sequence.intervals): a shorter window (pad),
    a full window aligned to the end (end_aligned), or none (drop)."""
    dims: tuple[int, ...] = ()
    """Matryoshka prefixes to store (the widest is stored, the others are its prefixes);
    empty = every prefix the model was trained with."""
    pool: Literal["mean", "max", "last"] = "mean"
    """Pooling over a window's bases; `last` is the causal model's summary of the window."""
    per_base: bool = False
    """Also store per-base embeddings."""
    rc_average: bool = False
    """Average both strands (the result is the same for a sequence and its reverse complement)."""
    batch_size: int = 8
    """Windows per forward pass."""
    chunk: Optional[int] = None
    """Bases per streaming step of a causal model (a multiple of its attn_chunk); None = 16384."""
    precision: Literal["auto", "fp32", "bf16", "bf16-weights"] = "auto"
    """Compute precision: auto = bf16 autocast on CUDA, fp32 on the CPU; bf16-weights also casts
    the weights (faster, CUDA only; genossa.inference.PRECISIONS)."""
    dtype: Literal["float32", "float16"] = "float32"
    """Stored dtype of the embeddings."""

    def __post_init__(self) -> None:
        _positive(self, "window", "batch_size")
        if self.stride is not None and self.stride <= 0:
            raise ValueError("stride: must be > 0")
        if self.chunk is not None and self.chunk <= 0:
            raise ValueError("chunk: must be > 0")
        if any(d <= 0 for d in self.dims):
            raise ValueError(f"dims: must be positive, got {list(self.dims)}")
        for name, allowed in (("last", ("drop", "pad", "end_aligned")), ("pool", ("mean", "max", "last")),
                              ("precision", ("auto", "fp32", "bf16", "bf16-weights")), ("dtype", ("float32", "float16"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @property
    def step(self) -> int:
        """The stride in effect (window when stride is None)."""
        return self.stride or self.window


@dataclass
class ScoreConfig:
    """How variants are scored (`genossa score`)."""

    window: int = 16384
    """Bases the model reads per variant: left context + the scored positions (README, Variant scoring)."""
    downstream: int = 1024
    """Positions scored from the variant's first changed base onward (the LLR sum; alt cost grows with it)."""
    methods: tuple[str, ...] = ("llr", "embedding")
    rc_average: bool = False
    strict: bool = False
    """A REF mismatch is an error instead of a flagged record."""
    batch_size: int = 8

    def __post_init__(self) -> None:
        _positive(self, "window", "downstream", "batch_size")
        if self.window < self.downstream + 2:
            raise ValueError(f"window: must exceed downstream ({self.downstream}) by at least 2, got {self.window}")
        unknown = set(self.methods) - {"llr", "embedding"}
        if unknown:
            raise ValueError(f"methods: unknown {sorted(unknown)}; choose from llr, embedding")


@dataclass
class GenossaConfig:
    """A whole run: one section per part of genossa."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def __post_init__(self) -> None:
        k = self.train.activation_checkpointing
        if not isinstance(k, bool) and k > self.model.n_layers:
            raise ValueError(f"train.activation_checkpointing: {k} blocks, but the model has {self.model.n_layers}")


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:
            raise ValueError(f"{name}: must be > 0, got {getattr(obj, name)!r}")


def _nonnegative(obj: Any, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) >= 0:
            raise ValueError(f"{name}: must be >= 0, got {getattr(obj, name)!r}")


# --- strict conversion of plain YAML values into typed dataclasses -----------------------


class _Mismatch(Exception):
    """A value does not fit its declared type (converted into ConfigError with file/key)."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch(f"{key}: expected a mapping (section), got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        raise _Mismatch(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except _Mismatch:
                pass
        raise _Mismatch(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(f"{key}: expected {_type_name(tp)}, got {value!r}")
        item_tp = typing.get_args(tp)[0]
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"config field {key} has an unsupported type {tp!r}")
    raise _Mismatch(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Mismatch(f"unknown key {dotted!r}{hint}")
        kwargs[key] = _convert(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ValueError as err:  # __post_init__ range checks name the field
        raise _Mismatch(f"{prefix + '.' if prefix else ''}{err}") from None


def config_from_dict(values: dict, cls: type = GenossaConfig, source: str = "<dict>"):
    """Build `cls` from plain values, strictly; errors name `source` and the dotted key."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(values).__name__}")
    try:
        return _build(cls, values)
    except _Mismatch as err:
        raise ConfigError(f"{source}: {err}") from None


def config_to_dict(config: Any) -> dict:
    """Plain (YAML/JSON-ready) values of a config dataclass; tuples become lists."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def preset_names() -> list[str]:
    """Names of the presets shipped in the package (configs/*.yaml)."""
    return sorted(p.name[:-5] for p in resources.files("genossa.configs").iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: Path, label: str) -> Any:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{label}: cannot read config ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{label}:{where}: {problem}") from None


def load_config(name_or_path: str | Path, overrides: dict | None = None) -> GenossaConfig:
    """Load a preset by name (`tiny`) or a YAML file, then apply dotted `overrides`.

    `overrides` maps dotted keys to values (`{"train.steps": 10}`), as `--set` does on the CLI.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        label = str(path)
        if not path.exists():
            raise ConfigError(f"{label}: config file not found")
    else:
        if str(name_or_path) not in preset_names():
            raise ConfigError(
                f"{name_or_path}: neither a config file nor a preset (presets: {', '.join(preset_names())})"
            )
        label = f"preset {name_or_path!r}"
        path = Path(str(resources.files("genossa.configs") / f"{name_or_path}.yaml"))
    values = _read_yaml(path, label) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{label}: expected a mapping at the top level")
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {part!r} is not a section")
        node[leaf] = value
    return config_from_dict(values, GenossaConfig, label)


def parse_override(text: str) -> tuple[str, Any]:
    """`train.steps=10` -> ("train.steps", 10); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.steps=100")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML") from None


def save_config(config: Any, directory: str | Path) -> Path:
    """Write the resolved config as `config.yaml` into `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / CONFIG_FILENAME
    tmp = out.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    tmp.replace(out)
    return out


def config_hash(config: Any) -> str:
    """A short stable identity of a config (sha256 of its canonical JSON)."""
    canonical = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
