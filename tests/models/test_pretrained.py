"""Config validation, save/from_pretrained round trip, parameter counts, reverse complement."""
import json

import pytest
import torch

from genossa.models import (
    PRESETS,
    GenossaLM,
    ModelConfig,
    rc_augment,
    rc_average_embeddings,
    rc_average_log_likelihood,
    reverse_complement_padded,
    sequence_log_likelihood,
    tiny,
)
from genossa.sequence.alphabet import PAD


@pytest.mark.parametrize("field,value", [
    ("d_model", 0), ("ssm_heads", 4), ("ssm_groups", 4), ("topk_base", 100), ("topk_alpha", -1.0),
    ("matryoshka_dims", (128, 64)), ("mlp_ratio", -1.0), ("attn_window", 0), ("vocab_size", 4),
    ("ssm_scales", ()),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        ModelConfig(**{field: value})


def test_presets_build_and_count_parameters():
    counts = {name: fn() for name, fn in PRESETS.items()}
    assert GenossaLM(counts["tiny"]).num_parameters() < 1_000_000
    n = GenossaLM(counts["small"]).num_parameters()
    assert 10_000_000 < n < 100_000_000


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = GenossaLM(tiny(n_layers=1, ssm_scales=(64, 512)))
    tokens = torch.randint(0, 5, (1, 50))
    path = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((path / "config.json").read_text())["ssm_scales"] == [64, 512]
    loaded = GenossaLM.from_pretrained(path)
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.embedding.weight  # tying survives
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits, rtol=0, atol=0)


def test_reverse_complement_helpers():
    tokens = torch.tensor([[0, 0, 1, 4, 2, PAD], [3, 2, 1, 0, 1, 1]])
    rc = reverse_complement_padded(tokens)
    assert rc.tolist() == [[1, 4, 2, 3, 3, PAD], [2, 2, 3, 2, 1, 0]]
    assert torch.equal(reverse_complement_padded(rc), tokens)
    flipped, w = rc_augment(tokens, torch.arange(12.0).view(2, 6), p=1.0)
    assert torch.equal(flipped, rc) and w[0].tolist() == [4.0, 3.0, 2.0, 1.0, 0.0, 5.0]

    torch.manual_seed(0)
    model = GenossaLM(tiny(n_layers=1)).eval()
    ll = rc_average_log_likelihood(model, tokens)
    torch.testing.assert_close(ll, (sequence_log_likelihood(model, tokens) + sequence_log_likelihood(model, rc)) / 2)
    emb = rc_average_embeddings(model, tokens, dim=64)
    # RC-averaging is strand-symmetric: the same embeddings for a sequence and its reverse complement
    emb_rc = rc_average_embeddings(model, rc, dim=64)
    torch.testing.assert_close(emb[1], emb_rc[1].flip(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(emb[0, :5], emb_rc[0, :5].flip(0), rtol=1e-5, atol=1e-5)
