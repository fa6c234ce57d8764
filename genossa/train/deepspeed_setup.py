"""DeepSpeed set-up: process-group environment, the generated JSON config, safe checkpoint loads.

The DeepSpeed config is always generated from the typed TrainConfig, never written by hand.
No DeepSpeed op is JIT-compiled: the optimizer is a torch AdamW passed in by the caller
(`zero_allow_untested_optimizer`), and the shared-memory all-reduce op, which would be
compiled with ninja on a CPU run, is skipped because gloo does the communication.
"""
from __future__ import annotations

import importlib
import logging
import os
import socket

import torch

from genossa.config import TrainConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_process_group_env() -> None:
    """Fill in the variables of a single-process group when no launcher set them.

    `deepspeed`/`torchrun` set RANK, WORLD_SIZE, ... for each process; a plain
    `genossa train` is then one process, rank 0 of 1 (otherwise DeepSpeed looks for MPI).
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def import_deepspeed():
    """Import DeepSpeed with its CPU shared-memory op build disabled (gloo communicates)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # say it, rather than have it warn
    import deepspeed
    from deepspeed.utils import logger

    logger.setLevel(logging.WARNING)  # genossa reports progress itself
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    return deepspeed


def deepspeed_config(train: TrainConfig, world_size: int) -> dict:
    """The DeepSpeed JSON config for `train` on `world_size` processes."""
    config = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "train_batch_size": train.micro_batch_size * train.grad_accum * world_size,
        "gradient_clipping": train.grad_clip,
        "zero_optimization": {"stage": train.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # genossa logs its own metrics
        "wall_clock_breakdown": False,
    }
    if train.precision == "bf16":
        config["bf16"] = {"enabled": True}
    elif train.precision == "fp16":
        config["fp16"] = {"enabled": True, "initial_scale_power": 16, "loss_scale_window": 100}
    return config


def resolve_device(train: TrainConfig) -> torch.device:
    """This process's device: train.device resolved as for inference, on GPU LOCAL_RANK."""
    from genossa.inference import resolve_device as resolve

    device = resolve(train.device)
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if device.type == "cuda" else device


def _deepspeed_state_classes() -> list:
    """DeepSpeed's plain state-holding classes found in its ZeRO optimizer checkpoints.

    They are allow-listed by name for torch.load(weights_only=True): the unpickler rebuilds
    these few data holders and refuses every other global.
    """
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def use_safe_checkpoint_loads(engine) -> None:
    """Make `engine.load_checkpoint` read with torch.load(weights_only=True).

    DeepSpeed's own engine unpickles arbitrary objects; ours restores only tensors, plain
    containers and DeepSpeed's allow-listed state holders, so loading a checkpoint cannot
    execute code.
    """
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    allowed = _deepspeed_state_classes()

    class SafeTorchCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True)

    safe = SafeTorchCheckpointEngine.__new__(SafeTorchCheckpointEngine)
    safe.__dict__.update(engine.checkpoint_engine.__dict__)
    engine.checkpoint_engine = safe
