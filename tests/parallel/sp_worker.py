"""One rank of the sequence-parallel test (spawned by test_sequence_parallel.py): gloo group,
the shared tiny fp64 model and window, the loss share and its gradients written to out_dir."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from genossa.models import GenossaLM, tiny
from genossa.parallel import sequence_parallel_loss

SEED = 0
BATCH, LENGTH = 2, 100  # 13 query chunks of 8: ragged slices, the last rank ends mid-chunk


def build_model(dtype: torch.dtype = torch.float64, **overrides) -> GenossaLM:
    torch.manual_seed(SEED)
    # window 16 + chunk 8 and cap 8: most selected keys of a later rank lie in an earlier rank's
    # slice, before the relayed recent keys, so they come from the relayed pool
    settings = dict(kernels="naive", attn_window=16, attn_chunk=8, topk_base=4, topk_alpha=8.0, topk_cap=8,
                    ssm_chunk=16, ssm_scales=(4, 8, 16))
    cfg = tiny(**{**settings, **overrides})
    # fp64: a top-k near-tie could flip under reassociation; selections must agree exactly
    return GenossaLM(cfg).to(dtype)


def build_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """tokens [B, n] with a few PAD targets, loss weights [B, n] with zeros and soft-mask 0.5s."""
    g = torch.Generator().manual_seed(SEED + 1)
    tokens = torch.randint(0, 5, (BATCH, LENGTH), generator=g)
    tokens[1, -7:] = 5  # PAD tail: these targets never count
    weights = torch.ones(BATCH, LENGTH, dtype=torch.float64)
    weights[0, 30:45] = 0.5
    weights[1, :10] = 0.0
    return tokens, weights


def grads(model: GenossaLM) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def mamba_only_supported() -> bool:
    """Whether ModelConfig has the Mamba2-only ablation (config.attention = False)."""
    return "attention" in tiny().__dataclass_fields__


def run(rank: int, world: int, port: int, out_dir: str, variants: tuple[str, ...]) -> None:
    """variants: 'plain'; 'checkpointed' (activation checkpointing); 'mamba_only' (no attention)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        tokens, weights = build_batch()
        result = {}
        for name in variants:
            model = build_model(attention=False) if name == "mamba_only" else build_model()
            ckpt = name == "checkpointed"
            model.train(ckpt)
            model.gradient_checkpointing = ckpt
            out = sequence_parallel_loss(model, tokens, weights)
            out.loss.backward()
            result[name] = dict(loss=out.loss.detach(), value=out.value, bits=out.bits_per_base,
                                logits=out.output.logits.detach(), bounds=out.bounds, grads=grads(model))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_nccl(rank: int, world: int, port: int, out_dir: str, kernels: str, dtype_name: str) -> None:
    """One rank on GPU `rank` over NCCL: the plain loss share and its gradients (tensors moved to
    the CPU) written to out_dir, as `run` does over gloo."""
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=device)
    try:
        model = build_model(getattr(torch, dtype_name), kernels=kernels).to(device)
        tokens, weights = (t.to(device) for t in build_batch())
        out = sequence_parallel_loss(model, tokens, weights)
        out.loss.backward()
        torch.cuda.synchronize(device)
        result = dict(loss=out.loss.detach().cpu(), value=out.value.cpu(), bits=out.bits_per_base.cpu(),
                      logits=out.output.logits.detach().cpu(), bounds=out.bounds,
                      grads={n: g.cpu() for n, g in grads(model).items()})
        torch.save({"plain": result}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_deepspeed(rank: int, world: int, port: int, out_dir: str) -> None:
    """One DeepSpeed (ZeRO-0) backward of SequenceParallelObjective with grad_scale = world on
    one window: the engine's averaged gradients are written out (they must be the full gradient)."""
    import os

    from genossa.config import TrainConfig
    from genossa.parallel import SequenceParallelObjective
    from genossa.train.deepspeed_setup import deepspeed_config, import_deepspeed

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    deepspeed = import_deepspeed()
    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    try:
        model = build_model(torch.float32)  # DeepSpeed reduces fp32/fp16/bf16 gradients only
        objective = SequenceParallelObjective(model, grad_scale=world)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        config = deepspeed_config(TrainConfig(grad_clip=0.0, device="cpu"), world)
        engine, _, _, _ = deepspeed.initialize(model=objective, optimizer=optimizer, config=config)
        tokens, weights = build_batch()
        loss, bits, targets = engine(tokens, weights)
        engine.backward(loss)
        torch.save(dict(loss=loss.detach(), bits=bits, targets=targets, grads=grads(model)),
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
