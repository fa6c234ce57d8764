"""nn.Modules built from the ops: Mamba2 mixer, scan-informed sparse attention, fusion gate, norms, MLP."""
from genossa.modules.fusion import FusionGate
from genossa.modules.mamba2 import Mamba2Mixer, MixerOutput, MixerState
from genossa.modules.mlp import SwiGLU
from genossa.modules.norms import RMSNorm, RMSNormGated
from genossa.modules.scan_attention import AttentionCache, ScanSparseAttention

__all__ = [
    "AttentionCache", "FusionGate", "Mamba2Mixer", "MixerOutput", "MixerState", "RMSNorm", "RMSNormGated",
    "ScanSparseAttention", "SwiGLU",
]
