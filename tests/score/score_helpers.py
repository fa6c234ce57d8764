"""Constants and VCF writers shared by the score tests (tests/score is on sys.path)."""
from __future__ import annotations

from pathlib import Path

import pysam

# short windows keep the CPU tests fast; tiny() has attn_chunk 16, so a window of 96 with
# 24 scored positions starts windows every 36 bases and cuts suffixes at 16-base points
WINDOW, DOWNSTREAM = 96, 24


VCF_HEADER = [
    "##fileformat=VCFv4.2",
    '##INFO=<ID=VT,Number=1,Type=String,Description="Variant class">',
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
]


def write_vcf(path: Path, lengths: dict[str, int], rows: list[str], samples: tuple[str, ...] = (),
              compress: bool = False) -> Path:
    """A VCF with `rows` (tab-separated data lines) and contig lines from `lengths`."""
    lines = VCF_HEADER + [f"##contig=<ID={n},length={ln}>" for n, ln in lengths.items()]
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO" + ("\tFORMAT\t" + "\t".join(samples) if samples else "")
    text = "\n".join(lines + [cols] + rows) + "\n"
    path = Path(path)
    if compress:
        plain = path.with_name(path.name + ".plain")
        plain.write_text(text)
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
    else:
        path.write_text(text)
    return path
