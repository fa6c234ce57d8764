"""Variant-effect correlation (`genossa eval variants`): a score from a scored VCF against
measured effects.

Truth: a TSV with a header holding the columns `contig`, `pos` (1-based, as in the VCF),
`ref`, `alt` and the effect column (`--column`, default `effect`); other columns are ignored.
Each ALT allele of the scored VCF is matched to a truth row by (contig, pos, ref, alt);
alleles without the score field (skipped, REF mismatch) or without a truth row are counted
and left out. Reported: Pearson and Spearman (average ranks for ties) of score vs effect,
and, when every effect is 0 or 1, the AUROC of the score for label 1 (ties count one half;
0.5 = chance, below 0.5 = the score ranks the other way). All in numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genossa.errors import GenossaError, InputFormatError
from genossa.io.vcf import iter_records

TRUTH_KEYS = ("contig", "pos", "ref", "alt")


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x [n], tied values sharing their average rank (float64 [n])."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(1, x.size + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (nan when either side is constant or n < 2)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denom if denom > 0 else math.nan


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the average ranks."""
    return pearson(rankdata(x), rankdata(y))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted one half
    (Mann-Whitney U / (n1 n0)); nan without both classes."""
    labels = np.asarray(labels).astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(scores)
    return (float(ranks[labels].sum()) - n1 * (n1 + 1) / 2) / (n1 * n0)


@dataclass
class VariantEvalResult:
    field: str
    column: str
    matched: int
    unscored: int
    """ALT alleles of the VCF without a value of `field`."""
    no_truth: int
    """Scored ALT alleles with no truth row."""
    pearson: float
    spearman: float
    auroc: float | None
    """None unless the effects are binary (0/1)."""

    def format(self) -> str:
        lines = [f"{self.field} vs {self.column}: {self.matched:,} alleles matched "
                 f"({self.unscored:,} unscored, {self.no_truth:,} without a truth row)",
                 f"pearson   {self.pearson:.4f}", f"spearman  {self.spearman:.4f}"]
        if self.auroc is not None:
            lines.append(f"auroc     {self.auroc:.4f}")
        return "\n".join(lines)


def read_truth(path: str | Path, column: str = "effect") -> dict[tuple[str, int, str, str], float]:
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: truth TSV not found")
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("##")]
    if not lines:
        raise InputFormatError(f"{path}: empty truth TSV")
    header = lines[0].lstrip("#").split("\t")
    missing = [c for c in (*TRUTH_KEYS, column) if c not in header]
    if missing:
        raise InputFormatError(f"{path}: header lacks column {missing[0]!r} (needs {', '.join((*TRUTH_KEYS, column))})")
    at = {c: header.index(c) for c in (*TRUTH_KEYS, column)}
    truth = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        try:
            key = (fields[at["contig"]], int(fields[at["pos"]]), fields[at["ref"]].upper(), fields[at["alt"]].upper())
            value = float(fields[at[column]])
        except (IndexError, ValueError):
            raise InputFormatError(f"{path}: line {number}: expected contig, integer pos, ref, alt and a number "
                                   f"in {column!r}, got {line!r}") from None
        if key in truth:
            raise InputFormatError(f"{path}: line {number}: allele {key} appears twice")
        truth[key] = value
    return truth


def evaluate_variants(scores: str | Path, truth: str | Path, *, field: str = "GENOSSA_LLR", column: str = "effect",
                      negate: bool = False) -> VariantEvalResult:
    """Correlate INFO `field` (one value per ALT) of the scored VCF `scores` with `truth`."""
    effects = read_truth(truth, column)
    xs, ys = [], []
    unscored = no_truth = 0
    found_field = False
    for _, record in iter_records(scores):
        if not found_field:
            if field not in record.header.info:
                raise GenossaError(f"{scores}: no INFO field {field!r} in the header (was it made by genossa score?)")
            found_field = True
        values = record.info.get(field)
        if not isinstance(values, tuple):
            values = (values,) * len(record.alts or ())
        for alt, value in zip(record.alts or (), values):
            if value is None:
                unscored += 1
                continue
            key = (record.chrom, record.pos, record.ref.upper(), alt.upper())
            if key not in effects:
                no_truth += 1
                continue
            xs.append(-value if negate else value)
            ys.append(effects[key])
    if not xs:
        raise GenossaError(f"no allele of {scores} has both a {field} score and a truth row in {truth}")
    x, y = np.array(xs), np.array(ys)
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    return VariantEvalResult(field + (" (negated)" if negate else ""), column, x.size, unscored, no_truth,
                             pearson(x, y), spearman(x, y), auroc(x, y) if binary else None)
