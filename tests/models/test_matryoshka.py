"""Matryoshka prefixes: each gives a finite loss and a usable embedding, and training the tiny
model on the bundled E. coli genome lowers the loss of every prefix."""
import math
import time
from importlib import resources

import pysam
import pytest
import torch

from genossa.models import GenossaLM, tiny
from genossa.sequence import tokenize


def test_mrl_dims_are_the_prefixes_up_to_width():
    assert tiny().mrl_dims == (64, 128)
    assert tiny(d_model=100).mrl_dims == (64, 100)
    assert tiny(d_model=1536).mrl_dims == (64, 128, 256, 512, 768, 1024, 1536)


def test_every_prefix_gives_finite_loss_and_embedding():
    torch.manual_seed(0)
    model = GenossaLM(tiny(d_model=256, n_layers=1))
    tokens = torch.randint(0, 4, (2, 96))
    out = model.compute_loss(tokens)
    assert set(out.per_dim) == {64, 128, 256}
    for m, loss in out.per_dim.items():
        assert torch.isfinite(loss) and 1.0 < loss.item() < 3.0, (m, loss)
    torch.testing.assert_close(out.loss, sum(out.per_dim.values()) / 3)
    for m in (64, 128, 200, 256):
        emb = model.embed(tokens, dim=m)
        assert emb.shape == (2, 96, m) and torch.isfinite(emb).all()
        # a prefix is literally the leading channels of the full embedding
        torch.testing.assert_close(emb, model.embed(tokens)[..., :m])
        pooled = model.embed(tokens, dim=m, pool="mean")
        assert pooled.shape == (2, m) and pooled.std() > 0
        logits = model.prefix_logits(model(tokens).embeddings, m)
        assert logits.shape == (2, 96, model.config.vocab_size)
    with pytest.raises(ValueError, match="dim must be"):
        model.embed(tokens, dim=300)


def ecoli_tokens(start: int, stop: int) -> torch.Tensor:
    path = resources.files("genossa.resources") / "ecoli_k12.fa.gz"
    with pysam.FastaFile(str(path)) as fasta:
        seq = fasta.fetch("NC_007779.1", start, stop)
    return torch.from_numpy(tokenize(seq).astype("int64"))


@pytest.mark.slow  # ~10 s on an idle 2-core machine, ~45 s on a loaded one
def test_mrl_loss_decreases_for_every_prefix_on_ecoli():
    torch.manual_seed(0)
    genome = ecoli_tokens(10_000, 16_000)  # a 6 kb window
    model = GenossaLM(tiny(n_layers=1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    probe = genome[:4096].view(8, 512)  # fixed windows of the training region

    def probe_losses():
        with torch.no_grad():
            return {m: v.item() for m, v in model.compute_loss(probe).per_dim.items()}

    before = probe_losses()
    t0 = time.time()
    for _ in range(200):
        starts = torch.randint(0, genome.numel() - 256, (4,), generator=g)
        batch = torch.stack([genome[s:s + 256] for s in starts.tolist()])
        loss = model.compute_loss(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = probe_losses()
    assert time.time() - t0 < 120
    for m in model.config.mrl_dims:
        assert math.isfinite(after[m])
        # from ~ln 9 (untrained) to below ln 4 = 1.386 (better than uniform over the bases)
        assert after[m] < before[m] - 0.5, (m, before[m], after[m])
        assert after[m] < 1.37, (m, after[m])
