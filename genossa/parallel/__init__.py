"""How a model is spread over processes (the model code itself stays single-device)."""
from genossa.parallel.sequence import (
    SequenceParallelLoss,
    SequenceParallelObjective,
    sequence_parallel_forward,
    sequence_parallel_groups,
    sequence_parallel_loss,
    shard_bounds,
)

__all__ = [
    "SequenceParallelLoss",
    "SequenceParallelObjective",
    "sequence_parallel_forward",
    "sequence_parallel_groups",
    "sequence_parallel_loss",
    "shard_bounds",
]
