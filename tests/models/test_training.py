"""The tiny model overfits a short sequence, and every parameter receives a gradient."""
import torch

from genossa.models import GenossaLM, bits_per_base, lm_loss, mask_tokens, tiny
from genossa.sequence.alphabet import PAD


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = GenossaLM(tiny())
    tokens = torch.randint(0, 4, (2, 200))
    model.compute_loss(tokens).loss.backward()
    names = [n for n, _ in model.named_parameters()]
    for part in ("attention.lam", "attention.mu", "attention.summary.weight", "attention.summary_q.weight",
                 "attention.summary_k.weight", "fusion.proj.weight", "mixer.dt_bias", "mixer.A_log", "mixer.D",
                 "mixer.conv1d.weight"):
        assert any(part in n for n in names), part
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_tiny_model_overfits_a_short_sequence():
    torch.manual_seed(0)
    model = GenossaLM(tiny())
    tokens = torch.randint(0, 4, (1, 128), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(100):  # reaches ~2e-3 nats
        out = model.compute_loss(tokens)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = out.loss.item() if first is None else first
    final = model.compute_loss(tokens)
    assert first > 2.0
    assert final.loss.item() < 0.05, final.loss.item()
    assert final.bits_per_base.item() < 0.07


def test_loss_weights_and_padding():
    logits = torch.randn(2, 6, 9)
    tokens = torch.tensor([[0, 1, 2, 3, PAD, PAD], [3, 2, 1, 0, 1, 2]])
    per = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 9), tokens[:, 1:].reshape(-1),
                                            reduction="none").view(2, 5)
    keep = (tokens[:, 1:] != PAD).float()
    torch.testing.assert_close(lm_loss(logits, tokens), (per * keep).sum() / keep.sum())
    w = torch.rand(2, 6)
    ww = w[:, 1:] * keep
    torch.testing.assert_close(lm_loss(logits, tokens, w), (per * ww).sum() / ww.sum())
    torch.testing.assert_close(bits_per_base(logits, tokens), (per * keep).sum() / keep.sum() / torch.log(torch.tensor(2.0)))


def test_bidirectional_masked_lm_trains():
    torch.manual_seed(0)
    model = GenossaLM(tiny(causal=False, n_layers=1))
    tokens = torch.randint(0, 4, (2, 64))
    inputs, targets, weights = mask_tokens(tokens, 0.3, torch.Generator().manual_seed(0))
    assert (weights.sum() > 0) and (inputs[weights.bool()] != tokens[weights.bool()]).any()
    out = model.compute_loss(inputs, targets=targets, loss_weights=weights)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_checkpointing_some_blocks_keeps_the_gradients():
    """Recomputing the first k blocks (or all, or none) changes memory and time, not the numbers."""
    torch.manual_seed(0)
    model = GenossaLM(tiny(n_layers=3))
    tokens = torch.randint(0, 4, (2, 96))
    calls = [0, 0, 0]
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    grads = []
    for k, forwards in ((False, [1, 1, 1]), (1, [2, 1, 1]), (2, [2, 2, 1]), (True, [2, 2, 2])):
        model.zero_grad()
        calls[:] = [0, 0, 0]
        model.gradient_checkpointing = k
        model.compute_loss(tokens).loss.backward()
        assert calls == forwards, k  # a recomputed block runs again in backward
        grads.append([p.grad.clone() for p in model.parameters()])
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
