"""Fixtures for `genossa score`: a tiny random model on disk, VCF writers, short windows."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genossa.models.config import tiny
from genossa.models.hybrid import GenossaLM

@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return GenossaLM(tiny()).save_pretrained(tmp_path_factory.mktemp("tiny_model") / "model")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> GenossaLM:
    return GenossaLM.from_pretrained(tiny_model_dir).eval()
