"""The per-base importance track of an embedding store as bedGraph (0-based half-open, BED rules).

bedGraph intervals may not overlap, while windows may (stride < window): each base takes its
value from the first window (in store order: contig, then start) that covers it, i.e. the
window where it has the most context before it. With `bin` > 1 the values are averaged over
bins of `bin` bases (aligned at the start of each covered stretch). Neighbouring intervals
whose printed values are equal are joined, so N runs and flat stretches cost one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

_BLOCK = 4096  # windows read at a time: memory stays set by the window length


def _format(values: np.ndarray) -> list[str]:
    return [f"{v:.5g}" for v in values.tolist()]


def write_importance_bedgraph(group: zarr.Group, path: str | Path, *, bin: int = 1,
                              name: str = "genossa_importance", description: str = "") -> Path:
    """Write `group["importance"]` of an embedding store to `path` (bedGraph, plain text)."""
    if bin < 1:
        raise ValueError(f"bin must be >= 1, got {bin}")
    path = Path(path)
    n = group["start"].shape[0]
    frontier: dict[str, int] = {}
    with open(path, "w") as fh:
        desc = f' description="{description}"' if description else ""
        fh.write(f"track type=bedGraph name={name}{desc}\n")
        pending: list | None = None  # [contig, start, end, text] of the line not yet written
        for lo in range(0, n, _BLOCK):
            hi = min(n, lo + _BLOCK)
            contigs = group["contig"][lo:hi]
            starts, ends = group["start"][lo:hi], group["end"][lo:hi]
            offsets = group["base_offset"][lo:hi]
            first = int(offsets[0])
            last = int(offsets[-1] + ends[-1] - starts[-1])
            imp = group["importance"][first:last]
            for contig, s, e, off in zip(contigs.tolist(), starts.tolist(), ends.tolist(), offsets.tolist()):
                a = max(s, frontier.get(contig, 0))
                if a >= e:
                    continue
                frontier[contig] = e
                vals = imp[off - first + (a - s): off - first + (e - s)]
                edges = np.arange(a, e, bin, dtype=np.int64)
                if bin > 1:
                    sums = np.add.reduceat(vals.astype(np.float64), np.arange(0, vals.size, bin))
                    counts = np.diff(np.append(edges, e))
                    vals = sums / counts
                texts = _format(vals)
                stops = np.append(edges[1:], e).tolist()
                for b0, b1, t in zip(edges.tolist(), stops, texts):
                    if pending is not None and pending[0] == contig and pending[2] == b0 and pending[3] == t:
                        pending[2] = b1
                        continue
                    if pending is not None:
                        fh.write(f"{pending[0]}\t{pending[1]}\t{pending[2]}\t{pending[3]}\n")
                    pending = [contig, b0, b1, t]
        if pending is not None:
            fh.write(f"{pending[0]}\t{pending[1]}\t{pending[2]}\t{pending[3]}\n")
    return path


def read_bedgraph(path: str | Path) -> list[tuple[str, int, int, float]]:
    """(contig, start, end, value) lines of a bedGraph (tests and small files)."""
    rows = []
    with open(path) as fh:
        for line in fh:
            if line.startswith(("track", "#", "browser")) or not line.strip():
                continue
            c, s, e, v = line.rstrip("\n").split("\t")
            rows.append((c, int(s), int(e), float(v)))
    return rows
