"""`ModelConfig`: every hyper-parameter of the hybrid model, typed and range-checked.

Only simple field types (int, float, bool, Literal strings, tuple[int, ...]) so the strict YAML
loader in `genossa.config` can type-check them. Each field has a docstring below it; the YAML presets
(`configs/*.yaml`) use the same names. `__post_init__` raises ValueError naming the field.

The presets `tiny()`, `small()`, `base()`, `large()` are plain functions returning a config.
"""
from dataclasses import dataclass, replace
from typing import Literal

from genossa.sequence.alphabet import VOCAB_SIZE

MATRYOSHKA_DIMS = (64, 128, 256, 512, 768, 1024, 1536)


@dataclass
class ModelConfig:
    """Hyper-parameters of `GenossaLM` (hybrid Mamba2 + scan-informed sparse attention)."""

    vocab_size: int = VOCAB_SIZE
    """Number of token ids (genossa.sequence.alphabet: A C G T N PAD BOS EOS MASK = 9)."""
    d_model: int = 256
    """Width of the residual stream (= the full Matryoshka embedding width)."""
    n_layers: int = 4
    """Number of hybrid blocks (mixer + sparse attention + fusion gate, then MLP)."""

    ssm_heads: int = 6
    """Mamba2 SSD heads; split evenly over `ssm_scales` (must be a multiple of their count)."""
    ssm_head_dim: int = 32
    """Channels per SSD head (P); the mixer's inner width is ssm_heads * ssm_head_dim."""
    ssm_d_state: int = 32
    """SSM state size per head (N); each head's state is (ssm_head_dim x ssm_d_state)."""
    ssm_groups: int = 1
    """Groups sharing B and C (like multi-query attention); must divide ssm_heads."""
    ssm_conv: int = 4
    """Kernel width of the causal depthwise conv1d before the scan."""
    ssm_chunk: int = 64
    """Chunk length of the chunked SSD scan (numerics only; any length works)."""
    ssm_scales: tuple[int, ...] = (128, 1024, 4096)
    """Memory lengths (tokens) of the head groups: dt is initialized log-uniformly in
    [1/(2m), 2/m] for scale m with A = -1, so a group forgets over ~m tokens at init."""

    attn_heads: int = 4
    """Sparse attention heads."""
    attn_head_dim: int = 32
    """Channels per attention head (the scan-informed bias adds one fp32 scalar per key, bias.py)."""
    attn_window: int = 128
    """Local window: a query in the chunk starting at i0 sees every key in [i0 - window, i]."""
    attn_chunk: int = 64
    """Query chunk length: the selected (top-k) keys are shared by the queries of a chunk."""
    topk_base: int = 16
    """Budget k of selected keys per query chunk with no state dynamics (complexity 0)."""
    topk_alpha: float = 32.0
    """Budget added per unit of complexity: k = min(cap, base + floor(alpha * complexity)),
    complexity in [0, 1) = mean share of state change in the importance (see selection.py)."""
    topk_cap: int = 64
    """Upper bound of k: attention work is O(T * (window + chunk + cap))."""
    scan_summary_dim: int = 32
    """Width of the per-position scan summaries S (a projection of the SSM output)."""
    scan_bias_init: float = 0.1
    """Initial lambda and mu of the bias lambda*<q_i, W s_j> + mu*<k_j, W' s_j>."""

    causal: bool = True
    """True: next-base LM, strictly causal selection. False: bidirectional (forward and
    reverse scans, symmetric window, global top-k), for masked-LM training."""
    mlp_ratio: float = 2.0
    """Hidden width of the SwiGLU MLP as a multiple of d_model; 0 disables the MLP."""
    matryoshka_dims: tuple[int, ...] = MATRYOSHKA_DIMS
    """Candidate Matryoshka prefixes; those < d_model are used, plus d_model itself."""
    tie_embeddings: bool = True
    """Share the token embedding and the LM head weights."""
    norm_eps: float = 1e-5
    """Epsilon of every RMSNorm."""
    init_std: float = 0.02
    """Standard deviation of the normal init of linear and embedding weights."""
    attention: bool = True
    """False: the Mamba2-only ablation, blocks of mixer + MLP with no sparse attention and no fusion
    gate (the mixer's output enters the residual stream directly). Streaming works either way."""
    selection: Literal["scan", "change", "random", "strided"] = "scan"
    """What ranks the candidate keys of the top-k selection: 'scan' is the design (the scan's
    importance, ||h_t|| + ||h_t - h_{t-1}||); 'change' ranks by the state change ||h_t - h_{t-1}||
    alone (||h_t|| grows as the state accumulates, which favours recent positions); 'random' and
    'strided' are ablations that replace the importance by a function of
    the absolute position only (random: a fixed integer hash; strided: positions on a stride of
    attn_window, the most recent first, all others last). Causal and streamable alike; the
    budget k follows the same rule (the scan's complexity) in all four."""
    kernels: Literal["auto", "naive", "triton"] = "auto"
    """Implementation of the SSD scan, the key selection, the sparse attention and the norms: 'auto'
    runs the Triton kernels on CUDA and the PyTorch references elsewhere; 'naive'/'triton' force one
    (weights and outputs are the same either way, up to floating-point rounding)."""

    def __post_init__(self) -> None:
        for name in (
            "vocab_size", "d_model", "n_layers", "ssm_heads", "ssm_head_dim", "ssm_d_state",
            "ssm_groups", "ssm_conv", "ssm_chunk", "attn_heads", "attn_head_dim", "attn_window",
            "attn_chunk", "topk_cap", "scan_summary_dim",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: must be a positive int, got {value!r}")
        if self.vocab_size < VOCAB_SIZE:
            raise ValueError(f"vocab_size: must be >= {VOCAB_SIZE} (the genossa alphabet), got {self.vocab_size}")
        if self.topk_base < 0:
            raise ValueError(f"topk_base: must be >= 0, got {self.topk_base}")
        if self.topk_base > self.topk_cap:
            raise ValueError(f"topk_base: must be <= topk_cap ({self.topk_cap}), got {self.topk_base}")
        if self.topk_alpha < 0:
            raise ValueError(f"topk_alpha: must be >= 0, got {self.topk_alpha}")
        if not self.ssm_scales or any(m <= 0 for m in self.ssm_scales):
            raise ValueError(f"ssm_scales: must be a non-empty tuple of positive ints, got {self.ssm_scales!r}")
        if self.ssm_heads % len(self.ssm_scales):
            raise ValueError(
                f"ssm_heads: must be a multiple of len(ssm_scales) = {len(self.ssm_scales)}, got {self.ssm_heads}"
            )
        if self.ssm_heads % self.ssm_groups:
            raise ValueError(f"ssm_groups: must divide ssm_heads ({self.ssm_heads}), got {self.ssm_groups}")
        if self.mlp_ratio < 0:
            raise ValueError(f"mlp_ratio: must be >= 0, got {self.mlp_ratio}")
        if not self.matryoshka_dims or any(m <= 0 for m in self.matryoshka_dims):
            raise ValueError(f"matryoshka_dims: must be positive ints, got {self.matryoshka_dims!r}")
        if list(self.matryoshka_dims) != sorted(set(self.matryoshka_dims)):
            raise ValueError(f"matryoshka_dims: must be strictly increasing, got {self.matryoshka_dims!r}")
        if self.norm_eps <= 0:
            raise ValueError(f"norm_eps: must be > 0, got {self.norm_eps}")
        if self.init_std <= 0:
            raise ValueError(f"init_std: must be > 0, got {self.init_std}")
        if not isinstance(self.attention, bool):
            raise ValueError(f"attention: must be a bool, got {self.attention!r}")
        if self.selection not in ("scan", "change", "random", "strided"):
            raise ValueError(f"selection: must be 'scan', 'change', 'random' or 'strided', got {self.selection!r}")
        if not self.attention and self.selection != "scan":
            raise ValueError(f"selection: {self.selection!r} has no effect with attention = False; leave it 'scan'")

    @property
    def ssm_inner(self) -> int:
        """Inner width of the mixer (ssm_heads * ssm_head_dim)."""
        return self.ssm_heads * self.ssm_head_dim

    @property
    def mrl_dims(self) -> tuple[int, ...]:
        """Matryoshka prefixes actually trained: matryoshka_dims below d_model, then d_model."""
        return tuple(m for m in self.matryoshka_dims if m < self.d_model) + (self.d_model,)


def tiny(**overrides) -> ModelConfig:
    """CPU-sized model for tests and laptops (~0.3 M parameters)."""
    cfg = ModelConfig(
        d_model=128, n_layers=2, ssm_heads=6, ssm_head_dim=16, ssm_d_state=16, ssm_chunk=32,
        attn_heads=4, attn_head_dim=16, attn_window=32, attn_chunk=16, topk_base=4,
        topk_alpha=8.0, topk_cap=8, scan_summary_dim=16, mlp_ratio=2.0,
    )
    return replace(cfg, **overrides)


def small(**overrides) -> ModelConfig:
    """Single-GPU model (d_model 512, 8 layers)."""
    cfg = ModelConfig(
        d_model=512, n_layers=8, ssm_heads=12, ssm_head_dim=64, ssm_d_state=64, ssm_chunk=128,
        attn_heads=8, attn_head_dim=64, attn_window=256, attn_chunk=64, topk_base=32,
        topk_alpha=64.0, topk_cap=128, scan_summary_dim=64,
    )
    return replace(cfg, **overrides)


def base(**overrides) -> ModelConfig:
    """d_model 1024, 16 layers."""
    cfg = ModelConfig(
        d_model=1024, n_layers=16, ssm_heads=24, ssm_head_dim=64, ssm_d_state=128, ssm_chunk=256,
        attn_heads=16, attn_head_dim=64, attn_window=512, attn_chunk=128, topk_base=64,
        topk_alpha=128.0, topk_cap=256, scan_summary_dim=64,
    )
    return replace(cfg, **overrides)


def large(**overrides) -> ModelConfig:
    """d_model 1536 (every Matryoshka prefix), 24 layers."""
    cfg = ModelConfig(
        d_model=1536, n_layers=24, ssm_heads=24, ssm_head_dim=128, ssm_d_state=128, ssm_chunk=256,
        attn_heads=24, attn_head_dim=64, attn_window=512, attn_chunk=128, topk_base=64,
        topk_alpha=192.0, topk_cap=256, scan_summary_dim=128,
    )
    return replace(cfg, **overrides)


PRESETS = {"tiny": tiny, "small": small, "base": base, "large": large}
