"""A long-range recall benchmark generator (`genossa eval longrange`).

Each record is uniform random A/C/G/T background with one random key segment planted twice:

    [ background | KEY | background (distance - key_length bases) | KEY | background ]
                  ^ key_start                                       ^ recall_start = key_start + distance

The bases of the second copy (the recall segment) are predictable only by recalling the first
copy `distance` bases earlier: everything else is independent uniform noise, so a model that
cannot reach back that far scores 2 bits on them, and one that recalls the key scores near 0
(after the first base or two of the copy, which identify it). The key appears nowhere else in
the record (a draw that contains it a third time is redrawn).

Coordinates in the labels are 0-based half-open on the record. Every record is a pure function
of (seed, record index), so the first k records are the same whatever `n` is.

Outputs: PREFIX.fa (60 bases per line, uppercase) and PREFIX.tsv with the header
`record  length  key_start  recall_start  key_length  distance`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from genossa.errors import GenossaError

_LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)
LINE_WIDTH = 60
TSV_HEADER = ("record", "length", "key_start", "recall_start", "key_length", "distance")


@dataclass(frozen=True)
class RecallRecord:
    name: str
    sequence: str
    key_start: int
    recall_start: int
    key_length: int

    @property
    def distance(self) -> int:
        return self.recall_start - self.key_start

    @property
    def key(self) -> str:
        return self.sequence[self.key_start:self.key_start + self.key_length]

    @property
    def recall(self) -> str:
        return self.sequence[self.recall_start:self.recall_start + self.key_length]

    def label_row(self) -> tuple:
        return (self.name, len(self.sequence), self.key_start, self.recall_start, self.key_length, self.distance)


def _check(n: int, distance: int, key_length: int, margin: int) -> None:
    if n < 1:
        raise GenossaError(f"--n must be at least 1, got {n}")
    if key_length < 1:
        raise GenossaError(f"--key-length must be at least 1, got {key_length}")
    if distance < key_length:
        raise GenossaError(f"--distance ({distance}) must be at least --key-length ({key_length}): the copies would overlap")
    if margin < 0:
        raise GenossaError(f"--margin must be >= 0, got {margin}")


def recall_record(index: int, *, distance: int, key_length: int = 32, margin: int = 128, seed: int = 0,
                  prefix: str = "recall") -> RecallRecord:
    """Record `index` of the benchmark: length distance + key_length + 2 * margin, key_start
    uniform in [0, margin]."""
    _check(1, distance, key_length, margin)
    rng = np.random.default_rng([seed, index])
    length = distance + key_length + 2 * margin
    key_start = int(rng.integers(0, margin + 1))
    recall_start = key_start + distance
    while True:
        seq = _LETTERS[rng.integers(0, 4, size=length)]
        seq[recall_start:recall_start + key_length] = seq[key_start:key_start + key_length]
        text = seq.tobytes().decode("ascii")
        key = text[key_start:key_start + key_length]
        # exactly the two planted copies (overlapping occurrences counted too)
        if _occurrences(text, key) == 2:
            return RecallRecord(f"{prefix}_{index}", text, key_start, recall_start, key_length)


def _occurrences(text: str, key: str) -> int:
    count, at = 0, text.find(key)
    while at != -1:
        count += 1
        at = text.find(key, at + 1)
    return count


def iter_records(n: int, *, distance: int, key_length: int = 32, margin: int = 128, seed: int = 0,
                 prefix: str = "recall") -> Iterator[RecallRecord]:
    _check(n, distance, key_length, margin)
    for i in range(n):
        yield recall_record(i, distance=distance, key_length=key_length, margin=margin, seed=seed, prefix=prefix)


def write_benchmark(out_prefix: str | Path, n: int, *, distance: int, key_length: int = 32, margin: int = 128,
                    seed: int = 0) -> tuple[Path, Path]:
    """Write OUT_PREFIX.fa and OUT_PREFIX.tsv (see the module docstring); returns their paths."""
    _check(n, distance, key_length, margin)
    out_prefix = Path(out_prefix)
    fasta, tsv = Path(f"{out_prefix}.fa"), Path(f"{out_prefix}.tsv")
    if out_prefix.parent and not out_prefix.parent.is_dir():
        raise GenossaError(f"{out_prefix.parent}: output folder does not exist")
    with open(fasta, "w") as fa, open(tsv, "w") as labels:
        labels.write("\t".join(TSV_HEADER) + "\n")
        for rec in iter_records(n, distance=distance, key_length=key_length, margin=margin, seed=seed):
            fa.write(f">{rec.name}\n")
            s = rec.sequence
            fa.write("".join(s[i:i + LINE_WIDTH] + "\n" for i in range(0, len(s), LINE_WIDTH)))
            labels.write("\t".join(map(str, rec.label_row())) + "\n")
    return fasta, tsv


def read_labels(path: str | Path) -> list[dict]:
    """Rows of a PREFIX.tsv as dicts (integers converted)."""
    lines = Path(path).read_text().splitlines()
    if not lines or tuple(lines[0].split("\t")) != TSV_HEADER:
        raise GenossaError(f"{path}: not a long-range label table (expected header {' '.join(TSV_HEADER)})")
    rows = []
    for line in lines[1:]:
        fields = line.split("\t")
        rows.append({"record": fields[0], **{k: int(v) for k, v in zip(TSV_HEADER[1:], fields[1:])}})
    return rows


# --- scoring a model on the benchmark (`genossa eval recall`) ------------------------------


@dataclass
class RecallScore:
    """Per record: summed bits and correct argmax predictions over `targets` scored bases of
    the recall copy, and summed bits over as many background bases just before it (control)."""

    record: str
    distance: int
    targets: int
    recall_bits: float
    recall_correct: int
    background_bits: float
    selection_chunks: int = 0
    """(attention block, query chunk) pairs whose chunk overlaps the recall copy."""
    selection_hits: int = 0
    """Of those, the pairs whose selected keys (or local span) include a base of the key's first copy."""


@dataclass
class RecallResult:
    rows: list[RecallScore]
    checkpoint: str

    def _sum(self, name: str) -> float:
        return sum(getattr(r, name) for r in self.rows)

    @property
    def recall_bits_per_base(self) -> float:
        return self._sum("recall_bits") / self._sum("targets")

    @property
    def background_bits_per_base(self) -> float:
        return self._sum("background_bits") / self._sum("targets")

    @property
    def accuracy(self) -> float:
        return self._sum("recall_correct") / self._sum("targets")

    @property
    def key_hit_rate(self) -> float:
        """Fraction of the recall copy's query chunks (over blocks) whose attention pattern (the
        selected keys, or the local span) reaches the key's first copy: whether attention could see
        the key at all (nan: no attention blocks)."""
        chunks = self._sum("selection_chunks")
        return self._sum("selection_hits") / chunks if chunks else math.nan

    def format(self) -> str:
        distances = sorted({r.distance for r in self.rows})
        return "\n".join([
            f"long-range recall of {self.checkpoint}: {len(self.rows):,} records, distance "
            + ", ".join(f"{d:,}" for d in distances),
            f"recall bits/base      {self.recall_bits_per_base:.4f}  (0 = perfect recall)",
            f"background bits/base  {self.background_bits_per_base:.4f}  (2 = chance; the same number of bases just before the copy)",
            f"recall accuracy       {self.accuracy:.4f}  (argmax = the key's base; chance 0.25)",
            f"key hit rate          {self.key_hit_rate:.4f}  (query chunks of the copy whose attention reaches the key)",
        ])


def score_recall(checkpoint: str | Path, benchmark: str | Path, *, chunk: int = 16384, max_records: int | None = None,
                 device: str = "auto") -> RecallResult:
    """Score a causal model on PREFIX.fa + PREFIX.tsv (`benchmark` = PREFIX).

    Each record is read from its start to the end of the recall copy, streamed in chunks of
    `chunk` bases (rounded down to a multiple of the model's attn_chunk), so the model sees the
    whole distance. Scored: the recall copy's bases after its first (which background alone
    cannot predict, nor the key until a base identifies it) and, as a control, as many
    background bases ending just before the copy (fp32).
    """
    import torch
    import torch.nn.functional as F

    from genossa.inference import load_model
    from genossa.io.fasta import FastaGenome
    from genossa.models.streaming import iter_stream
    from genossa.sequence.tokenize import tokenize

    loaded = load_model(checkpoint, device)
    model = loaded.model
    if not model.config.causal:
        raise GenossaError(f"{checkpoint}: recall scoring needs a causal (next-base) model")
    step = model.config.attn_chunk
    chunk = max(step, chunk // step * step)
    rows = read_labels(f"{benchmark}.tsv")[:max_records]
    attentions = [b.attention for b in model.blocks if getattr(b, "attention", None) is not None]
    for attention in attentions:
        attention.record_selection = True
    genome = FastaGenome([f"{benchmark}.fa"])
    out = []
    for row in rows:
        k, rs = row["key_length"], row["recall_start"]
        if k < 2 or rs - (k - 1) < 1:
            raise GenossaError(f"{benchmark}.tsv: record {row['record']}: key too short or too close to the start to score")
        end = rs + k
        tokens = torch.from_numpy(tokenize(genome.fetch(row["record"], 0, end)).astype(np.int64))[None].to(loaded.device)
        lo = rs - (k - 1)  # first control target; logits at t - 1 predict target t
        key_span, recall_span = (row["key_start"], row["key_start"] + k), (rs, end)
        pieces, hits, chunks, start = [], 0, 0, 0
        for piece, output in zip(tokens.split(chunk, dim=1), iter_stream(model, tokens.split(chunk, dim=1))):
            pieces.append(output.logits[0].float())
            h, c = _selection_hits(attentions, start, key_span, recall_span)
            hits, chunks, start = hits + h, chunks + c, start + piece.shape[1]
        logits = torch.cat(pieces)  # [end, V]
        pred, targets = logits[lo - 1:end - 1], tokens[0, lo:end]  # [2k - 1, V], [2k - 1]
        bits = F.cross_entropy(pred, targets, reduction="none") / math.log(2)
        control, recall = bits[:k - 1], bits[k:]  # target rs (the copy's first base) is in neither
        correct = (pred[k:].argmax(-1) == targets[k:]).sum()
        out.append(RecallScore(row["record"], row["distance"], k - 1, float(recall.sum()), int(correct),
                               float(control.sum()), chunks, hits))
    for attention in attentions:
        attention.record_selection, attention.last_selection = False, None
    return RecallResult(out, str(checkpoint))


def _selection_hits(attentions, q_start: int, key_span: tuple[int, int], recall_span: tuple[int, int]):
    """(hits, chunks) of one streamed piece starting at q_start: over the attention blocks, the
    query chunks overlapping recall_span, and how many of them attend to a base of key_span."""
    hits = chunks = 0
    for attention in attentions:
        sel = attention.last_selection
        if sel is None:
            continue
        starts = q_start + attention.chunk_size * np.arange(sel.pos.shape[1])
        over = (starts < recall_span[1]) & (starts + attention.chunk_size > recall_span[0])
        in_key = (sel.valid & (sel.pos >= key_span[0]) & (sel.pos < key_span[1])).any(-1)[0].cpu().numpy()
        # or the key lies in the chunk's local span (dense attention: window >= distance)
        local = (np.maximum(starts - attention.window, 0) < key_span[1]) & (starts + attention.chunk_size > key_span[0])
        hits += int((in_key | local)[over].sum())
        chunks += int(over.sum())
    return hits, chunks
