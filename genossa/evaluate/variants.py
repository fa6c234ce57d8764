"""Variant-effect correlation (`genossa eval variants`): a score from a scored VCF against
measured effects.

Truth: a TSV with a header holding the columns `contig`, `pos` (1-based, as in the VCF),
`ref`, `alt` and the effect column (`--column`, default `effect`); other columns are ignored.
Each ALT allele of the scored VCF is matched to a truth row by (contig, pos, ref, alt);
alleles without the score field (skipped, REF mismatch) or without a truth row are counted
and left out. Reported: Pearson and Spearman (average ranks for ties) of score vs effect,
and, when every effect is 0 or 1, the AUROC of the score for label 1 (ties count one half;
0.5 = chance, below 0.5 = the score ranks the other way). Computed with scipy.stats
(pearsonr, spearmanr) and sklearn.metrics.roc_auc_score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_auc_score

from genossa.errors import GenossaError, InputFormatError
from genossa.io.vcf import iter_records

TRUTH_KEYS = ("contig", "pos", "ref", "alt")


def _varies(x: np.ndarray, y: np.ndarray) -> bool:
    """At least two pairs and neither side constant (otherwise a correlation is undefined)."""
    return x.size >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0


def pearson(x, y) -> float:
    """Pearson correlation (scipy.stats.pearsonr); nan when either side is constant or n < 2."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(pearsonr(x, y).statistic) if _varies(x, y) else math.nan


def spearman(x, y) -> float:
    """Spearman rank correlation, ties at their average rank (scipy.stats.spearmanr); nan as for pearson."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(spearmanr(x, y).statistic) if _varies(x, y) else math.nan


def auroc(scores, labels) -> float:
    """AUROC of `scores` for label 1 (sklearn.metrics.roc_auc_score; ties count one half);
    nan without both classes."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


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
