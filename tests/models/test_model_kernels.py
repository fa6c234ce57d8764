"""The model on the Triton kernels equals the model on the PyTorch references (CPU: interpreter)."""
import os

import pytest
import torch

from genossa.models.config import tiny
from genossa.models.hybrid import GenossaLM

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1",
    reason="needs CUDA or Triton's interpreter (TRITON_INTERPRET=1 before triton is imported)",
)


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def test_triton_model_matches_reference_forward_and_gradients():
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference = GenossaLM(tiny(kernels="naive")).to(device)
    fast = GenossaLM(tiny(kernels="triton")).to(device)
    fast.load_state_dict(reference.state_dict())
    tokens = torch.randint(0, 5, (2, 77), device=device)  # not a multiple of any chunk
    outs = {}
    for name, model in (("naive", reference), ("triton", fast)):
        result = model.compute_loss(tokens)
        result.loss.backward()
        outs[name] = (result.output.logits.detach(), {n: p.grad for n, p in model.named_parameters()})
    assert _rel(outs["triton"][0], outs["naive"][0]) < 1e-5  # fp32: measured ~1e-7
    for name, grad in outs["naive"][1].items():
        assert _rel(outs["triton"][1][name], grad) < 1e-5, name  # fp32: measured <= 1.3e-6


@torch.no_grad()
def test_streaming_on_triton_equals_one_shot_reference():
    from genossa.models.streaming import stream

    torch.manual_seed(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference = GenossaLM(tiny(kernels="naive")).to(device).eval()
    fast = GenossaLM(tiny(kernels="triton")).to(device).eval()
    fast.load_state_dict(reference.state_dict())
    tokens = torch.randint(0, 5, (1, 150), device=device)  # the pool is used: 150 > window + chunk
    one_shot = reference(tokens).logits
    streamed = stream(fast, tokens, chunk_len=2 * fast.config.attn_chunk).logits
    assert _rel(streamed, one_shot) < 1e-5
