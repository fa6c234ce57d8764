"""Sequence parallelism over NCCL on 2 GPUs (skipped with fewer): one window split across two
GPUs gives the logits, loss and gradients of the one-GPU `compute_loss` pass.

- PyTorch reference kernels in fp64: the contract of the CPU test (test_sequence_parallel.py),
  with its tolerances, now with CUDA tensors relayed by NCCL in forward and backward.
- Triton kernels in fp32: the relay splits the chunked scan at other boundaries, so importance
  differs by fp32 reassociation and a top-k near-tie may pick another key; the tolerances are
  those of fp32 with an occasional swapped key (the measured errors are printed).
"""
import pytest
import torch
import torch.multiprocessing as mp

import sp_worker
from test_sequence_parallel import _check_equal, _free_port, _relative

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]


def _reference_on_gpu(kernels: str, dtype: torch.dtype) -> dict:
    model = sp_worker.build_model(dtype, kernels=kernels).cuda(0)
    tokens, weights = (t.cuda(0) for t in sp_worker.build_batch())
    out = model.compute_loss(tokens, loss_weights=weights)
    out.loss.backward()
    return dict(tokens=tokens.cpu(), loss=out.loss.detach().cpu(), bits=out.bits_per_base.cpu(),
                logits=out.output.logits.detach().cpu(), grads={n: g.cpu() for n, g in sp_worker.grads(model).items()})


def _spawn_nccl(tmp_path, kernels: str, dtype_name: str) -> list[dict]:
    mp.spawn(sp_worker.run_nccl, args=(2, _free_port(), str(tmp_path), kernels, dtype_name), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True)["plain"] for r in range(2)]


def test_nccl_two_gpus_equal_one_gpu_reference_kernels(tmp_path):
    ranks = _spawn_nccl(tmp_path, "naive", "float64")
    print("NCCL, 2 GPUs, reference kernels fp64:", _check_equal(ranks, _reference_on_gpu("naive", torch.float64)))


def test_nccl_two_gpus_equal_one_gpu_triton_kernels(tmp_path):
    ranks = _spawn_nccl(tmp_path, "triton", "float32")
    ref = _reference_on_gpu("triton", torch.float32)
    logits = torch.cat([r["logits"] for r in ranks], 1)
    err = {"logits_max_abs": (logits - ref["logits"]).abs().max().item(),
           "loss_rel": abs(sum(r["loss"] for r in ranks).item() / ref["loss"].item() - 1)}
    err["grad_rel_max"] = max(_relative(sum(r["grads"][n] for r in ranks), g) for n, g in ref["grads"].items())
    print("NCCL, 2 GPUs, Triton kernels fp32:", err)
    assert err["logits_max_abs"] <= 1e-3
    assert err["loss_rel"] <= 1e-5
    assert err["grad_rel_max"] <= 1e-2
