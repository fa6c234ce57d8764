"""Inference precisions: bf16-weights casts the loaded model, and is refused off CUDA."""
import pytest
import torch
from kernel_helpers import gpu

from genossa.errors import GenossaError
from genossa.inference import autocast, for_precision, resolve_precision
from genossa.models import GenossaLM, tiny


def test_resolve_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("bf16-weights", torch.device("cuda")) == "bf16-weights"
    for bad in ("bf16", "bf16-weights"):
        with pytest.raises(GenossaError, match=f"--precision {bad} needs a CUDA device"):
            resolve_precision(bad, cpu)
    with pytest.raises(GenossaError, match="must be one of"):
        resolve_precision("fp8", cpu)


def test_bf16_weights_cast_every_parameter_and_fp32_keeps_them():
    model = GenossaLM(tiny())
    assert for_precision(model, "fp32") is model and all(p.dtype == torch.float32 for p in model.parameters())
    cast = for_precision(model, "bf16-weights")
    assert all(p.dtype == torch.bfloat16 for p in cast.parameters())
    assert cast.lm_head.weight is cast.embedding.weight  # still tied


@pytest.mark.gpu
@gpu
def test_bf16_weights_forward_follows_fp32_on_gpu():
    torch.manual_seed(0)
    model = GenossaLM(tiny()).cuda().eval()
    tokens = torch.randint(0, 4, (2, 2048), device="cuda")
    dev = torch.device("cuda")
    with torch.no_grad():
        ref = model(tokens).embeddings.float()
        fast = for_precision(model, "bf16-weights")
        with autocast(dev, "bf16-weights"):
            got = fast(tokens).embeddings.float()
    cos = torch.nn.functional.cosine_similarity(got.mean(1), ref.mean(1), dim=-1)
    assert got.isfinite().all() and (cos > 0.999).all(), cos
