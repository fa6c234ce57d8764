"""Shared fixtures: bundled data paths and builders of small FASTA files in temp folders.

Without a CUDA GPU the Triton kernels run on Triton's CPU interpreter, which must be chosen
before triton is first imported: this file is loaded before any test module.
"""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path

import pytest

from genossa import resources
from genome_helpers import random_genome, write_fasta


def pytest_collection_modifyitems(items):
    """The tests marked slow first (a stable sort, the same in every test worker): the longest jobs start
    at once beside the short ones instead of last, alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture
def fasta_writer(tmp_path):
    """write(records, name='genome.fa', compression='plain') -> Path inside a fresh temp folder."""

    def write(records: dict[str, str], name: str = "genome.fa", compression: str = "plain", line_width: int = 60) -> Path:
        return write_fasta(tmp_path / name, records, compression, line_width)

    return write


@pytest.fixture
def small_genome() -> dict[str, str]:
    return random_genome()
