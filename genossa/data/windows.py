"""Streaming training windows from FASTA contigs and BAM reads as a torch IterableDataset.

Items are dicts (a DataLoader collates them into [B, L] batches):

    tokens     int64 [L]  token ids (genossa.sequence.alphabet; PAD after a short window)
    soft_mask  bool  [L]  True where the base was lowercase (soft-masked); False on padding
    valid      bool  [L]  True on real bases, False on padding (use it as the loss mask)
    source     str        "fasta" or "bam"
    contig     str        FASTA record, or the BAM read name
    start, end int        the real bases [start, end), 0-based half-open, on the record or read
    strand     str        "+" as read from the file, "-" if reverse-complemented (augmentation)
    shard, position, num_shards  int   where the item sits in its shard's stream (for resuming)

The stream of one epoch is: the FASTA windows (tiled from whole contigs, or from the BED
`regions` minus `exclude`, see genossa.sequence.intervals for the tail policy), then the
windows of the BAM reads that pass the filters, file after file (BED files restrict FASTA
windows only; each read is windowed whole). With `shuffle`, the FASTA
windows of indexed files (plain, bgzip) are permuted as a whole each epoch; windows of
plain-gzip files, which can only be streamed, keep their file's record order and are
permuted within each record (the record is held in memory). BAM reads keep file order.
Everything is a pure function of (seed, epoch): the order, and the reverse-complement draw
of each window, which is keyed by the window itself (its index in the plan, or its read and
place in the read), not by its place in the order or by who reads it.

Sharding: the epoch's units (FASTA windows; BAM reads, whose windows stay together) are
dealt round-robin to `world_size x num_workers` shards; shard = rank * num_workers + worker.
Shards are disjoint and together complete. Each shard reads the BAM files whole and keeps
its own reads. Windows whose N fraction exceeds `max_n_fraction` are skipped (after
sharding, so shards stay disjoint).

Resuming: every shard numbers its candidate windows 0, 1, 2, ... (skipped ones included).
`state_dict()` holds, per shard of this rank, the next position not yet consumed;
`load_state_dict()` makes the next iteration start there, so a restarted run yields exactly
the remaining windows. With num_workers=0 the dataset records what it yields by itself;
with DataLoader workers the training loop reports each batch it consumed with
`mark_consumed(batch)` (it is idempotent, so calling it always is safe). Call
`set_epoch(epoch)` at the start of each epoch, as with DistributedSampler (with
num_workers=0 a finished pass also moves to the next epoch by itself); do not use
persistent_workers, whose workers keep a stale copy of the dataset.

pysam handles are opened lazily in the process that iterates (each worker) and never pickled.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from genossa.data.config import DataConfig
from genossa.errors import ConfigError
from genossa.io.bam import ReadFilter, iter_reads
from genossa.io.bed import read_bed
from genossa.io.fasta import FastaGenome
from genossa.resources import ECOLI_FASTA
from genossa.sequence import alphabet
from genossa.sequence.intervals import Interval, merge, subtract, tile_starts
from genossa.sequence.tokenize import tokenize

Split = Literal["train", "eval", "all"]

_MASK64 = (1 << 64) - 1


def _unit_random(*keys: int) -> float:
    """A uniform [0, 1) number that is a pure function of integer keys (splitmix64 mixing)."""
    h = 0
    for k in keys:
        h = (h + (k & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h / 2.0**64


@dataclass
class WindowPlan:
    """The FASTA windows of a genome in plan order (contig order, then start): [n] arrays."""

    contigs: list[str]
    contig: np.ndarray  # int32 [n], index into `contigs`
    start: np.ndarray  # int64 [n]
    end: np.ndarray  # int64 [n]

    def __len__(self) -> int:
        return int(self.start.size)


def plan_windows(
    intervals: list[Interval], contigs: list[str], length: int, stride: int, last: str
) -> WindowPlan:
    """Tile each interval (see `tile_starts`); `contigs` fixes the contig order and indices."""
    index = {name: i for i, name in enumerate(contigs)}
    parts_c, parts_s, parts_e = [], [], []
    for iv in sorted(intervals, key=lambda iv: (index[iv.contig], iv.start)):
        s, e = tile_starts(len(iv), length, stride, last)  # type: ignore[arg-type]
        parts_c.append(np.full(s.size, index[iv.contig], dtype=np.int32))
        parts_s.append(s + iv.start)
        parts_e.append(e + iv.start)
    if not parts_s:
        empty = np.zeros(0, dtype=np.int64)
        return WindowPlan(contigs, np.zeros(0, dtype=np.int32), empty, empty.copy())
    return WindowPlan(contigs, np.concatenate(parts_c), np.concatenate(parts_s), np.concatenate(parts_e))


@dataclass
class _Candidate:
    """A window before the N filter: its raw bytes (uint8 view of ASCII letters) and where it is."""

    position: int
    rc_key: tuple[int, ...]
    source: str
    file: str
    contig: str
    start: int
    end: int
    group: str  # summary row: the FASTA record, or the reference contig of a BAM read ('*' unmapped)
    raw: np.ndarray


# byte -> token of the complementary base (INVALID stays INVALID): reverse complement in one lookup
_BYTE_TO_RC_TOKEN = np.where(
    alphabet.BYTE_TO_TOKEN == alphabet.INVALID,
    alphabet.INVALID,
    alphabet.COMPLEMENT_TOKEN[np.minimum(alphabet.BYTE_TO_TOKEN, alphabet.VOCAB_SIZE - 1)],
).astype(np.uint8)


def encode_window(
    raw: np.ndarray, *, file: str, record: str, offset: int, reverse: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens uint8, soft_mask bool) of ASCII bytes, reverse-complemented if `reverse`.

    An illegal byte raises InputFormatError naming file, record and position. The hot path
    is one 256-entry table lookup (np.take, ~2x faster than fancy indexing; reverse
    complement uses a complemented table on the reversed view, so it costs no extra pass),
    one max and one compare. The full tokenizer only runs to name the offending base.
    """
    src = raw[::-1] if reverse else raw
    tokens = np.take(_BYTE_TO_RC_TOKEN if reverse else alphabet.BYTE_TO_TOKEN, src)
    if raw.size and tokens.max() == alphabet.INVALID:
        tokenize(raw, source=file, record=record, offset=offset)  # raises, naming the position
    # valid bytes are letters, so >= 'a' means lowercase
    return tokens, src >= ord("a")


class WindowDataset(IterableDataset):
    """Tokenized windows from `config` (a DataConfig); see the module docstring for the contract.

    split: "train" leaves out `held_out_contigs` (FASTA records, and BAM reads mapped to
    them), "eval" keeps only those, "all" keeps everything. rank/world_size default to
    torch.distributed's when it is initialized, else 0/1.
    """

    def __init__(
        self,
        config: DataConfig,
        *,
        split: Split = "train",
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        self.config = config
        self.split = split
        if rank is None or world_size is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank, world_size = dist.get_rank(), dist.get_world_size()
            else:
                rank, world_size = 0, 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.rank, self.world_size = rank, world_size
        self.length, self.stride = config.window, config.step

        fasta = list(config.fasta) or ([] if config.bam else [str(ECOLI_FASTA)])
        self.genome = FastaGenome(fasta) if fasta else None
        lengths = self.genome.lengths if self.genome else {}
        held_out = set(config.held_out_contigs)
        if self.genome is not None:
            unknown = sorted(held_out - set(lengths))
            if unknown:
                raise ConfigError(f"data.held_out_contigs: unknown contig {unknown[0]!r} (not in {fasta[0]})")
        if config.regions:
            intervals = merge(read_bed(config.regions, lengths))
        else:
            intervals = [Interval(name, 0, n) for name, n in lengths.items()]
        if config.exclude:
            intervals = subtract(intervals, read_bed(config.exclude, lengths))
        intervals = [iv for iv in intervals if self._in_split(iv.contig)]
        self.plan = plan_windows(intervals, list(lengths), self.length, self.stride, config.last_window)
        # contigs of plain-gzip files can only be streamed in file order
        self._streamed = np.array(
            [not self.genome.indexed(self.genome.contigs[c].file) for c in self.plan.contigs], dtype=bool
        ) if self.genome else np.zeros(0, dtype=bool)

        self.bam = [Path(p) for p in config.bam]
        self.reference = config.reference or (fasta[0] if fasta else None)
        self.read_filter = ReadFilter.from_options(
            min_length=config.min_read_length,
            min_mapq=config.min_mapq,
            secondary=config.exclude_secondary,
            supplementary=config.exclude_supplementary,
            duplicates=config.exclude_duplicates,
            qcfail=config.exclude_qcfail,
        )
        self.epoch = 0
        self._positions: dict[int, int] = {}
        self._num_shards: int | None = None

    # --- order, sharding and state ---------------------------------------------------------

    def _in_split(self, contig: str | None) -> bool:
        held = contig is not None and contig in self.config.held_out_contigs
        return self.split == "all" or (held if self.split == "eval" else not held)

    def fasta_order(self, epoch: int | None = None) -> np.ndarray:
        """Indices into `plan` in the order of `epoch` (see the module docstring)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.config.seed, epoch])
        streamed = self._streamed[self.plan.contig] if len(self.plan) else np.zeros(0, dtype=bool)
        direct = np.flatnonzero(~streamed)
        stream = np.flatnonzero(streamed)
        if self.config.shuffle:
            direct = rng.permutation(direct)
            if stream.size:
                stream = stream[np.lexsort((rng.random(stream.size), self.plan.contig[stream]))]
        return np.concatenate([direct, stream])

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its shuffle); a different epoch starts from its beginning."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._positions = {}

    def mark_consumed(self, batch: dict) -> None:
        """Record that the training loop consumed `batch` (an item or a collated batch)."""
        shards = np.atleast_1d(np.asarray(batch["shard"]))
        positions = np.atleast_1d(np.asarray(batch["position"]))
        self._num_shards = int(np.atleast_1d(np.asarray(batch["num_shards"]))[0])
        for shard, pos in zip(shards.tolist(), positions.tolist()):
            self._positions[shard] = max(self._positions.get(shard, 0), pos + 1)

    def state_dict(self) -> dict:
        """This rank's exact position: epoch and, per shard, the next window to yield."""
        return {
            "seed": self.config.seed,
            "epoch": self.epoch,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_shards": self._num_shards,
            "positions": dict(self._positions),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.config.seed or state["world_size"] != self.world_size or state["rank"] != self.rank:
            raise ValueError(
                f"data state was saved with seed={state['seed']}, rank={state['rank']}/{state['world_size']}; "
                f"this run has seed={self.config.seed}, rank={self.rank}/{self.world_size}"
            )
        self.epoch = int(state["epoch"])
        self._num_shards = state["num_shards"]
        self._positions = {int(k): int(v) for k, v in state["positions"].items()}

    # --- candidates ------------------------------------------------------------------------

    def _candidates(self, shard: int, num_shards: int, start: int) -> Iterator[_Candidate]:
        """This shard's windows from position `start` on, before the N filter."""
        order = self.fasta_order()
        mine = order[shard::num_shards]
        streams: dict[int, Iterator[tuple[str, str]]] = {}
        current: dict[int, tuple[str, str]] = {}
        for local in range(start, mine.size):
            i = int(mine[local])
            contig = self.plan.contigs[self.plan.contig[i]]
            s, e = int(self.plan.start[i]), int(self.plan.end[i])
            info = self.genome.contigs[contig]
            if self._streamed[self.plan.contig[i]]:
                # streamed files: this shard's windows come grouped by record, in file order
                if info.file not in streams:
                    streams[info.file] = self.genome.stream(info.file)
                while current.get(info.file, ("",))[0] != contig:
                    current[info.file] = next(streams[info.file])
                text = current[info.file][1][s:e]
            else:
                text = self.genome.fetch(contig, s, e)
            raw = np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)
            yield _Candidate(local, (0, i), "fasta", str(self.genome.paths[info.file]),
                             contig, s, e, contig, raw)
        yield from self._bam_candidates(shard, num_shards, start, position=mine.size)

    def _bam_candidates(self, shard: int, num_shards: int, start: int, position: int) -> Iterator[_Candidate]:
        read_index = 0
        for path in self.bam:
            for read in iter_reads(path, reference=self.reference, read_filter=self.read_filter):
                contig = read.reference_name if not read.is_unmapped else None
                if not self._in_split(contig):
                    continue
                r, read_index = read_index, read_index + 1
                if r % num_shards != shard:
                    continue
                starts, ends = tile_starts(read.query_length, self.length, self.stride, self.config.last_window)  # type: ignore[arg-type]
                if position + starts.size <= start:
                    position += starts.size
                    continue
                raw = np.frombuffer(read.query_sequence.encode("ascii"), dtype=np.uint8)
                for j, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
                    if position >= start:
                        yield _Candidate(position, (1, r, j), "bam", str(path), read.query_name, s, e,
                                         contig or "*", raw[s:e])
                    position += 1

    # --- items -----------------------------------------------------------------------------

    def _item(self, cand: _Candidate, tokens: np.ndarray, mask: np.ndarray, reverse: bool,
              shard: int, num_shards: int) -> dict:
        length = self.length
        n = tokens.size
        if n == length:
            out_tokens = torch.from_numpy(tokens.astype(np.int64))
            out_mask = torch.from_numpy(mask)
            valid = torch.ones(length, dtype=torch.bool)
        else:  # a padded tail window: real bases first, then PAD
            out_tokens = torch.full((length,), alphabet.PAD, dtype=torch.int64)
            out_tokens[:n] = torch.from_numpy(tokens)  # uint8 -> int64 in the copy
            out_mask = torch.zeros(length, dtype=torch.bool)
            out_mask[:n] = torch.from_numpy(mask)
            valid = torch.zeros(length, dtype=torch.bool)
            valid[:n] = True
        return {
            "tokens": out_tokens,
            "soft_mask": out_mask,
            "valid": valid,
            "source": cand.source,
            "contig": cand.contig,
            "start": cand.start,
            "end": cand.end,
            "strand": "-" if reverse else "+",
            "shard": shard,
            "position": cand.position,
            "num_shards": num_shards,
        }

    def __iter__(self) -> Iterator[dict]:
        shard, num_shards = self._shard()
        if self._positions and self._num_shards is not None and self._num_shards != num_shards:
            raise ValueError(
                f"the data state was saved with {self._num_shards} shards (world_size x num_workers); "
                f"this loader has {num_shards}: resume with the same number of DataLoader workers"
            )
        in_main = get_worker_info() is None
        max_n = self.config.max_n_fraction
        for cand in self._candidates(shard, num_shards, self._positions.get(shard, 0)):
            reverse = _unit_random(self.config.seed, self.epoch, *cand.rc_key) < self.config.rc_prob
            tokens, mask = encode_window(cand.raw, file=cand.file, record=cand.contig, offset=cand.start, reverse=reverse)
            if np.count_nonzero(tokens == alphabet.N) > max_n * tokens.size:
                continue
            item = self._item(cand, tokens, mask, reverse, shard, num_shards)
            if in_main:  # the consumer holds every item we yield: record it as consumed
                self.mark_consumed(item)
            yield item
        if in_main:
            self.set_epoch(self.epoch + 1)


# --- summary (genossa windows) -------------------------------------------------------------


@dataclass
class ContigSummary:
    """Windows of one FASTA record, or of the BAM reads mapped to one contig ('*' unmapped)."""

    source: str
    contig: str
    windows: int = 0
    """Candidate windows (before the N filter)."""
    kept: int = 0
    """Windows that pass the N filter (what the dataset yields)."""
    bases: int = 0
    """Real bases over all candidate windows."""
    n_bases: int = 0
    soft_masked: int = 0

    @property
    def n_fraction(self) -> float:
        return self.n_bases / self.bases if self.bases else 0.0

    @property
    def soft_masked_fraction(self) -> float:
        return self.soft_masked / self.bases if self.bases else 0.0


@dataclass
class WindowSummary:
    rows: list[ContigSummary]
    seconds: float
    reads: Counter = field(default_factory=Counter)
    """BAM reads: 'seen', 'kept' and each reject reason."""

    @property
    def windows(self) -> int:
        return sum(r.windows for r in self.rows)

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.rows)

    @property
    def bases(self) -> int:
        return sum(r.bases for r in self.rows)

    @property
    def bases_per_second(self) -> float:
        return self.bases / self.seconds if self.seconds > 0 else 0.0


def summarize_windows(config: DataConfig, split: Split = "all") -> WindowSummary:
    """Read and tokenize every window `config` yields (unshuffled), with per-contig statistics."""
    dataset = WindowDataset(config, split=split, rank=0, world_size=1)
    rows: dict[tuple[str, str], ContigSummary] = {}
    if dataset.genome is not None:  # every record in scope gets a row, even with no window
        for name in dataset.genome.contigs:
            if dataset._in_split(name):
                rows[("fasta", name)] = ContigSummary("fasta", name)
    max_n = config.max_n_fraction
    t0 = time.perf_counter()
    for cand in dataset._candidates(0, 1, 0):
        tokens, mask = encode_window(cand.raw, file=cand.file, record=cand.contig, offset=cand.start)
        row = rows.setdefault((cand.source, cand.group), ContigSummary(cand.source, cand.group))
        n_bases = int(np.count_nonzero(tokens == alphabet.N))
        row.windows += 1
        row.kept += n_bases <= max_n * tokens.size
        row.bases += tokens.size
        row.n_bases += n_bases
        row.soft_masked += int(np.count_nonzero(mask))
    seconds = time.perf_counter() - t0
    reads: Counter = Counter()
    for path in dataset.bam:  # the filter statistics need one more pass over the headers of the reads
        for _ in iter_reads(path, reference=dataset.reference, read_filter=dataset.read_filter, stats=reads):
            pass
    return WindowSummary(list(rows.values()), seconds, reads)


def format_summary(summary: WindowSummary, config: DataConfig) -> str:
    """A plain-text table of `summary` (what `genossa windows` prints)."""
    lines = [
        f"window {config.window:,} bases, stride {config.step:,}, last window: {config.last_window}, "
        f"max N fraction {config.max_n_fraction:g}",
        f"{'source':<6}  {'contig':<32}  {'windows':>9}  {'kept':>9}  {'bases':>13}  {'N frac':>7}  {'soft-masked':>11}",
    ]
    for r in summary.rows:
        lines.append(
            f"{r.source:<6}  {r.contig:<32}  {r.windows:>9,}  {r.kept:>9,}  {r.bases:>13,}  "
            f"{r.n_fraction:>7.4f}  {r.soft_masked_fraction:>11.4f}"
        )
    n_bases = sum(r.n_bases for r in summary.rows)
    masked = sum(r.soft_masked for r in summary.rows)
    bases = summary.bases or 1
    lines.append(
        f"{'total':<6}  {'':<32}  {summary.windows:>9,}  {summary.kept:>9,}  {summary.bases:>13,}  "
        f"{n_bases / bases:>7.4f}  {masked / bases:>11.4f}"
    )
    if summary.reads:
        rejected = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.reads.items()) if k not in ("seen", "kept"))
        lines.append(f"reads: {summary.reads['seen']:,} seen, {summary.reads['kept']:,} kept"
                     + (f" (rejected: {rejected})" if rejected else ""))
    lines.append(f"read and tokenized {summary.bases:,} bases in {summary.seconds:.3f} s "
                 f"({summary.bases_per_second / 1e6:,.1f} Mbases/s)")
    return "\n".join(lines)
