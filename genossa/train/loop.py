"""`genossa train`: the training loop on a DeepSpeed engine, one CPU to many GPUs.

The same function runs as a single process (a plain `genossa train`: rank 0 of 1, gloo on
CPU) and under `deepspeed`/`torchrun` (one process per GPU, ranks from the environment).
Every run directory holds the resolved `config.yaml`, `metrics.jsonl`, TensorBoard logs,
`checkpoints/` (see checkpoint.py), the exported inference model `model/` (config +
safetensors, what `embed`/`score` load) and `loss_curves.png` (and `profile.txt` with
`train.profile_step`).
"""
from __future__ import annotations

import math
import resource
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from genossa.config import CONFIG_FILENAME, GenossaConfig, config_hash, load_config, save_config
from genossa.errors import GenossaError
from genossa.train.checkpoint import CHECKPOINT_DIRNAME, CheckpointManager, ResumeState
from genossa.train.deepspeed_setup import (
    deepspeed_config,
    ensure_process_group_env,
    import_deepspeed,
    resolve_device,
    use_safe_checkpoint_loads,
)
from genossa.train.metrics import MetricsLogger, plot_loss_curves
from genossa.train.schedule import lr_factor, window_length_at
from genossa.train.objective import (
    TrainingObjective,
    evaluate_bits_per_base,
    flops_per_token,
    register_for_zero3,
)

EXPORT_DIRNAME = "model"
PROFILE_FILENAME = "profile.txt"


@dataclass
class TrainSummary:
    run_dir: Path
    steps: int
    stopped_early: bool
    """True when the time limit stopped the run before config.train.steps."""
    final_train_bits_per_base: float
    final_eval_bits_per_base: float | None
    tokens: int
    seconds: float
    export_dir: Path


def train(config: GenossaConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          time_limit_s: float | None = None) -> TrainSummary:
    """Train `config` into `out_dir` (resuming from its last complete checkpoint if asked).

    time_limit_s: stop after the first step that ends past this many seconds of wall time (a
    batch job's limit), with a checkpoint and an export, so that `resume=True` continues the run.
    """
    job_started = time.perf_counter()
    from genossa.data.windows import WindowDataset
    from genossa.models.hybrid import GenossaLM

    out_dir = Path(out_dir)
    _check_run_dir(config, out_dir, resume)
    ensure_process_group_env()
    deepspeed = import_deepspeed()
    device = resolve_device(config.train)
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo", verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    sp = config.train.sequence_parallel  # ranks per window; the data-parallel replica is rank // sp
    if world % sp:
        raise GenossaError(f"train.sequence_parallel = {sp} does not divide the {world} processes")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tcfg = config.train
    if rank == 0:
        save_config(config, out_dir)

    # identical initial weights on every rank; data order is sharded by the dataset
    torch.manual_seed(tcfg.seed)
    lm = GenossaLM(config.model)
    lm.gradient_checkpointing = tcfg.activation_checkpointing
    if sp > 1:
        from genossa.parallel import SequenceParallelObjective, sequence_parallel_groups

        # DeepSpeed averages gradients over all ranks, of which sp hold shares of one window
        model = SequenceParallelObjective(lm, sequence_parallel_groups(sp), grad_scale=sp)
    else:
        model = TrainingObjective(lm)
    if tcfg.zero_stage == 3:
        register_for_zero3(model)
    # one fused kernel per step on the GPU (per parameter, ~10 launches each, otherwise)
    optimizer = torch.optim.AdamW(
        _param_groups(model, tcfg.weight_decay), lr=tcfg.lr, betas=tuple(tcfg.betas), foreach=False,
        fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(lr_factor, warmup_steps=tcfg.warmup_steps, total_steps=tcfg.steps, min_ratio=tcfg.min_lr_ratio),
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(tcfg, world)
    )
    use_safe_checkpoint_loads(engine)
    checkpoints = CheckpointManager(out_dir, rank=rank, keep_last=tcfg.keep_last)

    data = WindowDataset(config.data, split="train", rank=rank // sp, world_size=world // sp)
    eval_data = WindowDataset(config.data, split="eval", rank=0, world_size=1) if config.data.held_out_contigs else None
    step, extra = 0, {"tokens": 0, "seconds": 0.0}
    if resume:
        tag = checkpoints.latest_tag()
        if tag is not None:
            state = checkpoints.load(engine, tag)
            step, extra = state.step, dict(state.extra)
            data.load_state_dict(state.data)
            _log0(rank, f"resumed from {checkpoints.root / tag} at step {step}")

    peak_flops = _measured_matmul_flops(device, tcfg.precision)
    logger = MetricsLogger(out_dir, enabled=rank == 0)
    bar = _progress_bar(rank == 0 and progress, initial=step, total=tcfg.steps)
    batches = _batches(data, tcfg.micro_batch_size)
    last_good = checkpoints.latest_tag()
    train_bpb = eval_bpb = float("nan")
    try:
        while step < tcfg.steps:
            length = window_length_at(
                step, start=tcfg.seq_len_warmup_start, full=config.data.window,
                warmup_steps=tcfg.seq_len_warmup_steps, multiple=config.model.ssm_chunk,
            )
            engine.train()
            profiling = step + 1 == tcfg.profile_step and rank == 0
            started = time.perf_counter()
            with _step_profiler(out_dir / PROFILE_FILENAME, step + 1, device) if profiling else nullcontext():
                sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*w, bits*w, w
                for _ in range(tcfg.grad_accum):
                    batch = next(batches)
                    tokens = batch["tokens"][:, :length].to(device)
                    weights = _loss_weights(batch, length, tcfg.soft_mask_weight).to(device)
                    loss, bits, weight = engine(tokens, weights)
                    engine.backward(loss)
                    engine.step()
                    sums += torch.stack([loss.detach().double() * weight, bits.double() * weight, weight.double()])
                if world > 1:
                    dist.all_reduce(sums)
                mean_loss = (sums[0] / sums[2].clamp_min(1)).item()
                train_bpb = (sums[1] / sums[2].clamp_min(1)).item()
            step += 1
            if not math.isfinite(mean_loss):
                raise GenossaError(
                    f"non-finite loss ({mean_loss}) at step {step}; stopped. Last good checkpoint: "
                    f"{checkpoints.root / last_good if last_good else 'none'}"
                )
            elapsed = time.perf_counter() - started
            step_tokens = tcfg.micro_batch_size * tcfg.grad_accum * length * world // sp
            extra["tokens"] += step_tokens
            extra["seconds"] += elapsed
            if step % tcfg.log_every == 0 or step == tcfg.steps:
                tokens_per_s = step_tokens / elapsed
                logger.log(
                    step, "train", loss=mean_loss, bits_per_base=train_bpb, lr=scheduler.get_last_lr()[0],
                    window=length, tokens_per_s=tokens_per_s, tokens_per_s_per_device=tokens_per_s / world,
                    mfu=tokens_per_s / world * flops_per_token(config.model, length) / peak_flops,
                    peak_memory_mib=_peak_memory_mib(device), tokens=extra["tokens"],
                )
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.3f}", bpb=f"{train_bpb:.3f}", tok_s=f"{step_tokens / elapsed:,.0f}")
            if eval_data is not None and (step % tcfg.eval_every == 0 or step == tcfg.steps):
                eval_bpb = evaluate_bits_per_base(engine, eval_data, tcfg.eval_windows, device=device)
                logger.log(step, "eval", bits_per_base=eval_bpb)
                if rank == 0 and progress:
                    bar.write(f"step {step}: held-out bits/base {eval_bpb:.4f}")
            out_of_time = _past_limit(job_started, time_limit_s, device, world)
            if step % tcfg.checkpoint_every == 0 or step == tcfg.steps or out_of_time:
                checkpoints.save(engine, ResumeState(step=step, data=data.state_dict(), extra=extra))
                last_good = checkpoints.latest_tag()
            if out_of_time and step < tcfg.steps:
                _log0(rank, f"time limit reached: stopped after step {step} of {tcfg.steps} with a checkpoint; "
                            f"continue with --resume")
                break
    finally:
        bar.close()
        logger.close()
    export_dir = out_dir / EXPORT_DIRNAME
    _export(engine, export_dir, rank, tcfg.zero_stage)
    if rank == 0:
        plot_loss_curves(out_dir)
    return TrainSummary(
        run_dir=out_dir, steps=step, stopped_early=step < tcfg.steps, final_train_bits_per_base=train_bpb,
        final_eval_bits_per_base=None if eval_data is None else eval_bpb,
        tokens=extra["tokens"], seconds=extra["seconds"], export_dir=export_dir,
    )


@contextmanager
def _step_profiler(path: Path, step: int, device: torch.device):
    """torch.profiler around one step (this rank); its summary written to `path`."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        yield
    wall_ms = (time.perf_counter() - started) * 1e3
    table = prof.key_averages()
    device_sort = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    path.write_text(
        f"step {step}: {wall_ms:.1f} ms of wall time (from the first micro-batch to the loss on the host)\n\n"
        f"top ops by their own device time\n{table.table(sort_by=device_sort, row_limit=30, max_name_column_width=60)}\n"
        f"top ops by their own CPU time\n{table.table(sort_by='self_cpu_time_total', row_limit=30, max_name_column_width=60)}\n"
    )


def _past_limit(started: float, limit_s: float | None, device: torch.device, world: int) -> bool:
    """Whether the wall-time limit has passed, agreed by all ranks (rank clocks differ slightly)."""
    if limit_s is None:
        return False
    flag = torch.tensor([float(time.perf_counter() - started > limit_s)], device=device)
    if world > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _check_run_dir(config: GenossaConfig, out_dir: Path, resume: bool) -> None:
    saved = out_dir / CONFIG_FILENAME
    has_run = (out_dir / CHECKPOINT_DIRNAME).exists() or saved.exists()
    if has_run and not resume:
        raise GenossaError(f"{out_dir}: already holds a training run; pass --resume to continue it or choose another --out")
    if resume and saved.exists():
        previous = load_config(saved)
        if config_hash(previous.model) != config_hash(config.model):
            raise GenossaError(f"{saved}: the model section differs from the config given; cannot resume a different model")


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on norms, biases, scalars such as A_log or gates)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _batches(dataset, batch_size: int):
    """Endless micro-batches; the dataset's own state_dict tracks the exact position."""
    from torch.utils.data import DataLoader

    while True:
        produced = False
        for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0, drop_last=True):
            produced = True
            yield batch
        if not produced:
            raise GenossaError("the training data yields fewer windows than one micro-batch; lower micro_batch_size or the window")


def _loss_weights(batch: dict, length: int, soft_mask_weight: float) -> torch.Tensor:
    weights = batch["valid"][:, :length].float()
    if soft_mask_weight != 1.0:
        weights = weights * torch.where(batch["soft_mask"][:, :length], soft_mask_weight, 1.0)
    return weights


def _measured_matmul_flops(device: torch.device, precision: str) -> float:
    """The device's matmul rate, measured (the denominator of model FLOPs utilization)."""
    n = 4096 if device.type == "cuda" else 512
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cpu":
        dtype = torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, started = 5, time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _export(engine, export_dir: Path, rank: int, zero_stage: int) -> None:
    """Write the inference model (config + safetensors) that embed/score load."""
    module = engine.module.lm
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            if rank == 0:
                module.save_pretrained(export_dir)
    elif rank == 0:
        module.save_pretrained(export_dir)
    if dist.is_initialized():
        dist.barrier()


def _progress_bar(enabled: bool, *, initial: int, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def _log0(rank: int, message: str) -> None:
    if rank == 0:
        print(message, flush=True)
