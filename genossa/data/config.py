"""The `data:` section of a genossa config: which inputs become model windows, and how.

Paths are plain strings (YAML-friendly); an empty `fasta` means the bundled E. coli slice.
Coordinates in BED files are 0-based half-open (BED's own convention). Field ranges are
checked in `__post_init__`, which raises ValueError naming the field (the config loader
turns it into a ConfigError naming the file too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from genossa.sequence.intervals import LastWindow


@dataclass
class DataConfig:
    """Inputs (FASTA, BAM/CRAM, BED) and the windowing, filtering and augmentation policy."""

    fasta: tuple[str, ...] = ()
    """FASTA files (plain, gzip or bgzip) forming one genome; empty = the bundled E. coli slice,
    unless `bam` is given (then only the reads are windowed)."""
    bam: tuple[str, ...] = ()
    """BAM/CRAM files whose read sequences are windowed too (after the FASTA windows)."""
    reference: str = ""
    """Reference FASTA for CRAM decoding; empty = the first `fasta` file (or the bundled genome)."""
    regions: str = ""
    """BED of intervals to include; empty = whole contigs. Applies to FASTA windows only."""
    exclude: str = ""
    """BED of intervals to remove from the included ones (FASTA windows only)."""
    window: int = 131072
    """Window length in bases (tokens per item)."""
    stride: Optional[int] = None
    """Distance between window starts; None = `window` (adjacent, no overlap)."""
    last_window: LastWindow = "pad"
    """The tail of an interval that no full window reaches: 'drop' it, 'pad' it into one
    window with PAD tokens (valid=False), or add one full 'end_aligned' window ending at the
    interval end. Intervals (and reads) shorter than `window` yield one padded window under
    'pad' and nothing under 'drop' or 'end_aligned'."""
    max_n_fraction: float = 0.1
    """Windows whose fraction of N among real bases is larger are skipped."""
    rc_prob: float = 0.5
    """Probability that a window is reverse-complemented (seeded, per window)."""
    shuffle: bool = True
    """Shuffle the window order each epoch (deterministic from seed and epoch)."""
    min_read_length: int = 1000
    """BAM reads shorter than this (bases in SEQ) are skipped."""
    min_mapq: int = 0
    """BAM reads with a lower MAPQ are skipped (0 keeps unmapped reads)."""
    exclude_secondary: bool = True
    """Skip secondary alignments (flag 0x100)."""
    exclude_supplementary: bool = True
    """Skip supplementary alignments (flag 0x800)."""
    exclude_duplicates: bool = True
    """Skip PCR/optical duplicates (flag 0x400)."""
    exclude_qcfail: bool = True
    """Skip reads failing vendor quality checks (flag 0x200)."""
    held_out_contigs: tuple[str, ...] = ()
    """Contigs kept out of training and used for evaluation (split='eval'); each must be a
    record of `fasta` (an unknown name is an error, not a silently empty evaluation set)."""
    seed: int = 0
    """Seed of the window order and of the reverse-complement draws."""

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window: must be >= 1, got {self.window!r}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride: must be >= 1 or null, got {self.stride!r}")
        if self.last_window not in ("drop", "pad", "end_aligned"):
            raise ValueError(f"last_window: must be 'drop', 'pad' or 'end_aligned', got {self.last_window!r}")
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError(f"max_n_fraction: must be in [0, 1], got {self.max_n_fraction!r}")
        if not 0.0 <= self.rc_prob <= 1.0:
            raise ValueError(f"rc_prob: must be in [0, 1], got {self.rc_prob!r}")
        if self.min_read_length < 0:
            raise ValueError(f"min_read_length: must be >= 0, got {self.min_read_length!r}")
        if not 0 <= self.min_mapq <= 255:
            raise ValueError(f"min_mapq: must be in [0, 255], got {self.min_mapq!r}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed: must be in [0, 2**63), got {self.seed!r}")

    @property
    def step(self) -> int:
        """The effective stride (`stride`, or `window` when stride is None)."""
        return self.window if self.stride is None else self.stride
