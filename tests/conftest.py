"""Shared fixtures: bundled data paths and builders of small FASTA files in temp folders.

Without a CUDA GPU the Triton kernels run on Triton's CPU interpreter, which must be chosen
before triton is first imported: this file is loaded before any test module.
"""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import gzip
from pathlib import Path

import numpy as np
import pysam
import pytest

from genossa import resources


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: the shapes are small, and on a shared 2-core machine a
    second spinning thread under load once slowed a 7 s test to 3 minutes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ecoli_fasta() -> Path:
    return resources.ECOLI_FASTA


@pytest.fixture(scope="session")
def reads_bam() -> Path:
    return resources.ECOLI_READS_BAM


@pytest.fixture(scope="session")
def regions_bed() -> Path:
    return resources.ECOLI_REGIONS_BED


@pytest.fixture(scope="session")
def variants_vcf() -> Path:
    return resources.ECOLI_VARIANTS_VCF


def write_fasta(path: Path, records: dict[str, str], compression: str = "plain", line_width: int = 60) -> Path:
    """Write `records` as FASTA at `path`: 'plain', 'gzip' (plain gzip) or 'bgzip'."""
    text = "".join(
        f">{name}\n" + "".join(seq[i : i + line_width] + "\n" for i in range(0, len(seq), line_width))
        for name, seq in records.items()
    )
    path = Path(path)
    if compression == "plain":
        path.write_text(text)
    elif compression == "gzip":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    elif compression == "bgzip":
        plain = path.with_name(path.name + ".tmp")
        plain.write_text(text)
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
    else:
        raise ValueError(compression)
    return path


def random_genome(seed: int = 0, lengths=(5000, 1234, 777)) -> dict[str, str]:
    """Records with random bases, a lowercase (soft-masked) stretch and an N run each."""
    rng = np.random.default_rng(seed)
    records = {}
    for i, n in enumerate(lengths):
        raw = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, n)].copy()
        lo = n // 4
        raw[lo : lo + n // 10] += 32  # lowercase
        raw[n // 2 : n // 2 + n // 20] = ord("N")
        records[f"chr{i + 1}"] = raw.tobytes().decode()
    return records


@pytest.fixture
def fasta_writer(tmp_path):
    """write(records, name='genome.fa', compression='plain') -> Path inside a fresh temp folder."""

    def write(records: dict[str, str], name: str = "genome.fa", compression: str = "plain", line_width: int = 60) -> Path:
        return write_fasta(tmp_path / name, records, compression, line_width)

    return write


@pytest.fixture
def small_genome() -> dict[str, str]:
    return random_genome()
