"""Builders of small FASTA genomes for tests (import as `from genome_helpers import ...`:
pytest puts tests/ on sys.path for tests/conftest.py)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pysam


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
