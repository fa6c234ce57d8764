"""Learning-rate and window-length schedules, and the generated DeepSpeed config."""
import math

import pytest

from genossa.config import TrainConfig
from genossa.train.deepspeed_setup import deepspeed_config
from genossa.train.schedule import lr_factor, window_length_at


def test_lr_warmup_then_cosine_to_floor():
    kw = dict(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert lr_factor(0, **kw) == pytest.approx(0.1)
    assert lr_factor(9, **kw) == pytest.approx(1.0)
    assert lr_factor(10, **kw) == pytest.approx(1.0)
    assert lr_factor(60, **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, **kw) == pytest.approx(0.1)
    assert lr_factor(500, **kw) == pytest.approx(0.1)
    values = [lr_factor(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_window_grows_geometrically_in_whole_chunks():
    kw = dict(start=1024, full=131072, warmup_steps=100, multiple=256)
    lengths = [window_length_at(s, **kw) for s in range(0, 101)]
    assert lengths[0] == 1024 and lengths[-1] == 131072
    assert all(length % 256 == 0 for length in lengths)
    assert all(a <= b for a, b in zip(lengths, lengths[1:]))
    assert lengths[50] == int(1024 * math.sqrt(128)) // 256 * 256
    assert window_length_at(5, start=1024, full=4096, warmup_steps=0, multiple=64) == 4096


@pytest.mark.parametrize("precision, key", [("bf16", "bf16"), ("fp16", "fp16"), ("fp32", None)])
def test_deepspeed_config_follows_train_config(precision, key):
    cfg = TrainConfig(micro_batch_size=2, grad_accum=3, zero_stage=2, grad_clip=0.5, precision=precision)
    ds = deepspeed_config(cfg, world_size=4)
    assert ds["train_batch_size"] == 2 * 3 * 4
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 3
    assert ds["zero_optimization"] == {"stage": 2} and ds["gradient_clipping"] == 0.5
    assert "optimizer" not in ds  # a torch optimizer is passed in: no JIT-compiled DeepSpeed op
    for k in ("bf16", "fp16"):
        assert (k in ds) == (k == key)
