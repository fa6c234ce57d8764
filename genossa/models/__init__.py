"""The hybrid model: config, GenossaLM, losses, Matryoshka, streaming and reverse-complement helpers."""
from genossa.models.config import PRESETS, ModelConfig, base, large, small, tiny
from genossa.models.hybrid import GenossaLM, LossOutput, ModelOutput, ModelState
from genossa.models.losses import bits_per_base, lm_loss, mask_tokens
from genossa.models.matryoshka import mrl_loss, truncated_logits
from genossa.models.rc import (
    rc_augment,
    rc_average_embeddings,
    rc_average_log_likelihood,
    reverse_complement_padded,
    sequence_log_likelihood,
)
from genossa.models.streaming import iter_stream, stream

__all__ = [
    "PRESETS", "GenossaLM", "LossOutput", "ModelConfig", "ModelOutput", "ModelState", "base", "bits_per_base",
    "iter_stream", "large", "lm_loss", "mask_tokens", "mrl_loss", "rc_augment", "rc_average_embeddings",
    "rc_average_log_likelihood", "reverse_complement_padded", "sequence_log_likelihood", "small", "stream",
    "tiny", "truncated_logits",
]
