"""genossa: long-sequence genomic language modelling.

Mamba2 (SSD) + scan-informed sparse attention, Matryoshka embeddings, FASTA/BAM/VCF I/O.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genossa")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from genossa.errors import GenossaError

__all__ = ["GenossaError", "__version__"]
