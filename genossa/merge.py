"""Merging sharded outputs: embedding stores into one store, scored VCFs into one VCF.

Embedding stores (`merge_embedding_stores`): the shards must be complete genossa stores made
by one model with one set of settings (the same weights sha256 and config hash; the same
window, stride, tail policy, pooling, Matryoshka dims, width, dtype, precision, strands and
per-base option; the same genome lengths), and their windows must be exactly the windows a
single `genossa embed` run would tile the genome (or the `regions` BED) into with those
settings: every planned window in exactly one shard (no overlap), none missing (no gap),
nothing else. Shards may come in any order; the merged store lists windows in reference
order, with the layout of genossa.io.zarr_store, and is the store a single run would have
written (same arrays; the same values up to fp32 rounding where that run would have batched
windows of two shards together; attrs record the shards it came from). It is built under
`<out>.partial` and renamed when complete.

Scored VCFs (`merge_scored_vcfs`): per-shard outputs of `genossa score` on the contig shards
of one VCF (genossa.shards.split_vcf). Their headers must be identical (same input header,
same `##genossa_score` model/settings line) and each contig's records must come from one
shard. Records are written contig by contig in reference order (FASTA order, else the
header's), each contig's records in file order, bgzipped and tabix-indexed, under a
temporary name then renamed.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam
import zarr

from genossa import __version__
from genossa.data.windows import plan_windows
from genossa.errors import GenossaError
from genossa.io import zarr_store
from genossa.io.bed import read_bed
from genossa.io.bedgraph import write_importance_bedgraph
from genossa.io.fasta import FastaGenome, quiet_htslib
from genossa.io.vcf import _open, output_path_ok, publish_indexed_vcf
from genossa.sequence.intervals import Interval

PER_SHARD_SETTINGS = ("regions", "fasta", "batch_size", "device_type")
"""Settings that may differ between shards: a shard's own region and input path, and how it
was batched and where it ran (none changes which windows exist or what the model computed)."""
MODEL_KEYS = ("weights_sha256", "config_hash")
"""The model's identity: a store's `attrs["genossa"]["model"]` entries that must agree."""
_BLOCK_WINDOWS = zarr_store.WINDOW_ROWS
_BLOCK_BASES = 4 * zarr_store.TRACK_ROWS


@dataclass
class MergeSummary:
    out: Path
    shards: int
    windows: int
    bases: int


def _paths(fasta) -> list[Path]:
    return [Path(fasta)] if isinstance(fasta, (str, Path)) else [Path(f) for f in fasta]


def _canonical(value):
    return json.loads(json.dumps(value))


def _check_same_run(shards: list[Path], attrs: list[dict]) -> None:
    """Error unless every shard has the first shard's model and settings."""
    ref, first = attrs[0], shards[0]
    for path, a in zip(shards[1:], attrs[1:]):
        for key in MODEL_KEYS:
            if a["model"].get(key) != ref["model"].get(key):
                raise GenossaError(
                    f"{path}: made by another model than {first} ({key} {str(a['model'].get(key))[:16]} vs "
                    f"{str(ref['model'].get(key))[:16]}); shards of one store must come from one model"
                )
        if (a.get("format"), a.get("format_version")) != (ref.get("format"), ref.get("format_version")):
            raise GenossaError(f"{path}: store format {a.get('format_version')} differs from {first}'s "
                               f"({ref.get('format_version')})")
        mine, theirs = _canonical(a["settings"]), _canonical(ref["settings"])
        diff = sorted(k for k in set(mine) | set(theirs)
                      if k not in PER_SHARD_SETTINGS and mine.get(k) != theirs.get(k))
        if diff:
            shown = ", ".join(f"{k}: {mine.get(k)!r} vs {theirs.get(k)!r}" for k in diff[:3])
            raise GenossaError(f"{path}: embedded with other settings than {first} ({shown}); "
                               "shards of one store must share every setting but their regions")


def merge_embedding_stores(
    shards: Sequence[str | Path],
    out: str | Path,
    *,
    fasta: str | Path | Sequence[str | Path],
    regions: str | Path | None = None,
    bedgraph: str | Path | None = None,
    bedgraph_bin: int = 1,
    overwrite: bool = False,
    command: str | None = None,
) -> MergeSummary:
    """Merge the embedding stores `shards` into one store `out` (see the module docstring).

    fasta: the genome the shards must cover (its records and lengths must be the ones the
    shards recorded); regions: a BED, when the whole run was meant to cover only those
    intervals (as `genossa embed --regions`). bedgraph: also write the merged importance
    track there (bedGraph, `bedgraph_bin` bases per line).
    """
    shards = [Path(s) for s in shards]
    if not shards:
        raise GenossaError("no shards to merge")
    if len(set(p.resolve() for p in shards)) != len(shards):
        raise GenossaError("a shard is listed twice")
    out = Path(out)
    zarr_store.check_target(out, overwrite=overwrite)
    groups = [zarr_store.open_store(p) for p in shards]
    attrs = [dict(g.attrs["genossa"]) for g in groups]
    _check_same_run(shards, attrs)
    ref = attrs[0]
    settings = ref["settings"]

    genome = FastaGenome(_paths(fasta))
    lengths = genome.lengths
    recorded = settings["contig_lengths"]
    if dict(recorded) != lengths:
        missing = [c for c in recorded if c not in lengths] + [c for c in lengths if c not in recorded]
        what = (f"records {missing[:3]} are in only one of them" if missing else
                "record lengths differ")
        raise GenossaError(f"{shards[0]}: embedded from another genome than {genome.paths[0]} ({what})")
    contigs = list(lengths)
    intervals = read_bed(regions, lengths) if regions else [Interval(c, 0, n) for c, n in lengths.items()]
    plan = plan_windows(intervals, contigs, int(ref["window"]), int(ref["stride"]), ref["last"])
    index = {(contigs[c], int(s), int(e)): i for i, (c, s, e) in enumerate(zip(plan.contig, plan.start, plan.end))}

    # where each shard's windows go in the merged store, checked before anything is written
    owner = np.full(len(plan), -1, dtype=np.int64)
    targets = []
    for k, (path, g) in enumerate(zip(shards, groups)):
        keys = zip(g["contig"][:].tolist(), g["start"][:].tolist(), g["end"][:].tolist())
        target = np.empty(g["start"].shape[0], dtype=np.int64)
        for i, key in enumerate(keys):
            j = index.get(key)
            if j is None:
                raise GenossaError(
                    f"{path}: window {key[0]}:{key[1]}-{key[2]} is not one of the genome's windows "
                    f"(window {ref['window']}, stride {ref['stride']}, last {ref['last']!r}"
                    + (f", regions {regions}" if regions else "") + ")")
            if owner[j] >= 0:
                raise GenossaError(f"{path}: window {key[0]}:{key[1]}-{key[2]} is also in {shards[owner[j]]}; "
                                   "shards must not overlap")
            owner[j] = k
            target[i] = j
        targets.append(target)
    gap = np.flatnonzero(owner < 0)
    if gap.size:
        first = [f"{contigs[plan.contig[j]]}:{plan.start[j]}-{plan.end[j]}" for j in gap[:3]]
        by_contig = sorted({contigs[plan.contig[j]] for j in gap})
        raise GenossaError(
            f"the shards miss {gap.size:,} of the genome's {len(plan):,} windows (e.g. {', '.join(first)}; "
            f"records {', '.join(by_contig[:5])}{', ...' if len(by_contig) > 5 else ''}); "
            "a shard is missing or incomplete")

    lengths_w = (plan.end - plan.start).astype(np.int64)
    base_offset = np.concatenate([[0], np.cumsum(lengths_w)[:-1]]).astype(np.int64)
    n_bases = int(lengths_w.sum())
    width = int(ref["embedding_width"])
    per_base = bool(ref["per_base"])
    merged_attrs = dict(ref)
    merged_attrs["settings"] = {
        **settings,
        "regions": None if not regions else {"path": str(Path(regions).resolve()),
                                             "bytes": Path(regions).stat().st_size},
        "fasta": [{"path": str(p.resolve()), "bytes": p.stat().st_size} for p in genome.paths],
    }
    merged_attrs.update(
        windows=len(plan), bases=n_bases, version=__version__,
        command=command or f"genossa.merge.merge_embedding_stores({len(shards)} shards)",
        merged_from=[{"path": str(p.resolve()), "windows": int(t.size), "command": a.get("command")}
                     for p, t, a in zip(shards, targets, attrs)],
    )

    partial = zarr_store.partial_path(out)
    if partial.exists():  # a merge is cheap to redo: never resumed
        if not zarr_store.is_genossa_store(partial) and any(partial.iterdir()):
            raise GenossaError(f"{partial}: in the way of the merged store, and not a genossa store; remove it")
        shutil.rmtree(partial)
    strand = "." if ref["rc_average"] else "+"
    merged = zarr_store.create(
        partial, zarr_store.StoreLayout(len(plan), n_bases, width, settings["dtype"], per_base), merged_attrs,
        {"contig": np.asarray(contigs, dtype=object)[plan.contig].astype(str), "start": plan.start,
         "end": plan.end, "base_offset": base_offset, "strand": np.full(len(plan), strand)},
    )
    for g, target in zip(groups, targets):
        _copy_shard(g, merged, target, base_offset, per_base)
    extra = []
    if bedgraph is not None:
        bedgraph = Path(bedgraph)
        tmp = bedgraph.with_name(bedgraph.name + ".partial")
        write_importance_bedgraph(merged, tmp, bin=bedgraph_bin,
                                  description=f"genossa {__version__} scan importance, {out.name}")
        extra.append((tmp, bedgraph))
    zarr_store.finish(partial, out, extra)
    return MergeSummary(out, len(shards), len(plan), n_bases)


def _runs(target: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) runs of shard windows whose merged positions are consecutive."""
    if target.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(target) != 1) + 1
    edges = np.concatenate([[0], cuts, [target.size]])
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _copy_shard(src: zarr.Group, dst: zarr.Group, target: np.ndarray, base_offset: np.ndarray,
                per_base: bool) -> None:
    """Copy a shard's windows and their [base] rows to their merged positions, in blocks."""
    src_offset = src["base_offset"][:]
    src_len = (src["end"][:] - src["start"][:]).astype(np.int64)
    for lo, hi in _runs(target):
        for a in range(lo, hi, _BLOCK_WINDOWS):
            b = min(hi, a + _BLOCK_WINDOWS)
            j = int(target[a])
            dst["embedding"][j:j + b - a] = src["embedding"][a:b]
            dst["n_fraction"][j:j + b - a] = src["n_fraction"][a:b]
        s0 = int(src_offset[lo])
        s1 = int(src_offset[hi - 1] + src_len[hi - 1])
        d0 = int(base_offset[target[lo]])
        names = ["importance", "position"] + (["per_base_embedding"] if per_base else [])
        for a in range(s0, s1, _BLOCK_BASES):
            b = min(s1, a + _BLOCK_BASES)
            for name in names:
                dst[name][d0 + a - s0:d0 + b - s0] = src[name][a:b]


# --- scored VCFs ---------------------------------------------------------------------------


def merge_scored_vcfs(
    shards: Sequence[str | Path],
    out: str | Path,
    *,
    fasta: str | Path | Sequence[str | Path] | None = None,
    source: str | Path | None = None,
) -> int:
    """Concatenate per-contig scored VCFs into `out` (bgzip + .tbi) in reference order; returns
    the number of records. With `source` (the VCF that was split and scored), the merged file
    must hold as many records per contig as it does (nothing lost, nothing twice).
    """
    shards = [Path(s) for s in shards]
    if not shards:
        raise GenossaError("no shards to merge")
    out = output_path_ok(out)
    readers = [_open(p) for p in shards]
    try:
        header = str(readers[0].header)
        for path, r in zip(shards[1:], readers[1:]):
            if str(r.header) != header:
                theirs = set(str(r.header).splitlines())
                mine = set(header.splitlines())
                differ = sorted(theirs ^ mine, key=lambda s: not s.startswith("##genossa_score"))
                line = differ[0] if differ else "(the same lines in another order)"
                why = ("was scored by another model or with other settings"
                       if line.startswith("##genossa_score") else f"has another header (e.g. {line[:100]!r})")
                raise GenossaError(f"{path}: {why} than {shards[0]}; shards of one VCF must share their header")
        holder: dict[str, int] = {}
        counts: dict[str, int] = {}
        for k, (path, r) in enumerate(zip(shards, readers)):
            mine = _contig_counts(r, path)
            for contig, n in mine.items():
                if contig in holder:
                    raise GenossaError(f"{path}: has records on {contig}, as {shards[holder[contig]]} does; "
                                       "each contig's records must come from one shard")
                holder[contig] = k
                counts[contig] = n
        if fasta is not None:
            order = list(FastaGenome(_paths(fasta)).lengths)
        else:
            order = list(readers[0].header.contigs)
        unknown = [c for c in holder if c not in order]
        if unknown:
            raise GenossaError(f"{shards[holder[unknown[0]]]}: contig {unknown[0]!r} is not in the reference")
        if source is not None:
            expected = _contig_counts(_open(Path(source)), Path(source))
            if expected != counts:
                bad = sorted(c for c in set(expected) | set(counts) if expected.get(c, 0) != counts.get(c, 0))
                raise GenossaError(
                    f"the shards do not hold {source}'s records once each: contig {bad[0]} has "
                    f"{counts.get(bad[0], 0)} records in the shards, {expected.get(bad[0], 0)} in {source}")
    finally:
        for r in readers:
            r.close()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.vcf.gz")
    tbi = Path(str(tmp) + ".tbi")
    total = 0
    try:
        first = _open(shards[0])
        try:
            with quiet_htslib(), pysam.VariantFile(str(tmp), "wz", header=first.header) as writer:
                for contig in order:
                    if contig not in holder:
                        continue
                    k = holder[contig]
                    reader = first if k == 0 else _open(shards[k])
                    try:
                        for record in reader.fetch(contig):
                            writer.write(record)
                            total += 1
                    finally:
                        if reader is not first:
                            reader.close()
        finally:
            first.close()
        publish_indexed_vcf(tmp, out, "merged VCF")
    finally:
        for leftover in (tmp, tbi):
            if leftover.exists():
                leftover.unlink()
    return total


def _contig_counts(reader: pysam.VariantFile, path: Path) -> dict[str, int]:
    """Records per contig of an open VCF, read in one pass; contigs must not interleave."""
    counts: dict[str, int] = {}
    last = None
    with quiet_htslib():
        for record in reader:
            if record.chrom != last:
                if record.chrom in counts:
                    raise GenossaError(f"{path}: records of {record.chrom} are not together (sort the VCF)")
                last = record.chrom
                counts[last] = 0
            counts[last] += 1
    return counts
