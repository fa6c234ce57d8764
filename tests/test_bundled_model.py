"""The bundled pretrained model: listed, loaded on the CPU, better than uniform on bases it never
trained on, and used by `genossa embed` / `genossa score` when no --checkpoint is given."""
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest
import torch
import zarr

from genome_helpers import write_fasta
from genossa import resources
from genossa.inference import load_model
from genossa.pretrained import DEFAULT_MODEL, bundled_models, resolve_checkpoint
from genossa.sequence import tokenize

# the bundled held-out E. coli record holds the bases the model's own held-out record held
HELD_OUT = resources.HELD_OUT_CONTIG


def _genossa() -> str:
    beside = Path(sys.executable).parent / "genossa"
    return str(beside) if beside.exists() else shutil.which("genossa")


def _held_out_bases(n: int, start: int = 0) -> str:
    with pysam.FastaFile(str(resources.ECOLI_FASTA)) as fa:
        return fa.fetch(HELD_OUT, start, start + n).upper()


def test_default_model_is_listed_and_resolved(tmp_path, monkeypatch):
    names = [m.name for m in bundled_models()]
    assert DEFAULT_MODEL in names
    card = next(m for m in bundled_models() if m.name == DEFAULT_MODEL)
    assert "parameters" in card.summary and "bits/base" in card.summary
    path, used = resolve_checkpoint(None)
    assert used == DEFAULT_MODEL and (path / "model.safetensors").is_file()
    assert resolve_checkpoint(DEFAULT_MODEL) == (path, DEFAULT_MODEL)
    # a directory of that name in the working directory is an explicit path and wins
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_MODEL).mkdir()
    assert resolve_checkpoint(DEFAULT_MODEL) == (Path(DEFAULT_MODEL), None)


def test_bundled_model_beats_uniform_on_held_out_bases():
    loaded = load_model(resolve_checkpoint(None)[0], device="cpu")
    model = loaded.model
    assert model.config.causal and model.num_parameters() < 12_500_000  # <= 25 MB in bf16
    tokens = torch.as_tensor(tokenize(_held_out_bases(8192)), dtype=torch.long)[None]
    with torch.no_grad():
        logits = model(tokens).logits[0, :-1].double()
    nats = torch.nn.functional.cross_entropy(logits, tokens[0, 1:], reduction="mean").item()
    bits = nats / math.log(2)
    # measured 1.85-1.9 bits/base on the held-out records; an untrained model gives ~2.2
    assert bits < 1.95, bits


def test_embed_without_checkpoint_uses_the_bundled_model(tmp_path):
    fasta = write_fasta(tmp_path / "piece.fa", {"piece": _held_out_bases(3000, start=5000)})
    out = tmp_path / "piece.zarr"
    result = subprocess.run([_genossa(), "embed", "--fasta", str(fasta), "--out", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"using the bundled model '{DEFAULT_MODEL}'" in result.stderr
    store = zarr.open_group(str(out), mode="r")
    assert store["embedding"].shape == (1, 256)
    assert torch.isfinite(torch.as_tensor(store["embedding"][:])).all()


def test_score_without_checkpoint_uses_the_bundled_model(tmp_path):
    out = tmp_path / "scored.vcf.gz"
    result = subprocess.run(
        [_genossa(), "score", "--fasta", str(resources.ECOLI_FASTA), "--vcf", str(resources.ECOLI_VARIANTS_VCF),
         "--out", str(out), "--window", "128", "--downstream", "16", "--batch-size", "32", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "bundled model" in result.stderr
    with pysam.VariantFile(str(out)) as vcf:
        records = list(vcf)
    scored = [r for r in records if "GENOSSA_LLR" in r.info]
    assert len(records) == 50 and len(scored) >= 45
    assert all(math.isfinite(v) for r in scored for v in r.info["GENOSSA_LLR"] if v is not None)
