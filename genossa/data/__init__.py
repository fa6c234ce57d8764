"""Torch datasets over genossa.io: tokenized windows from FASTA and BAM, sharded and resumable."""
from genossa.data.config import DataConfig
from genossa.data.windows import WindowDataset, format_summary, summarize_windows

__all__ = ["DataConfig", "WindowDataset", "format_summary", "summarize_windows"]
