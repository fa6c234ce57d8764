"""Linear probe of a checkpoint's embeddings on labelled sequences (`genossa eval probe`).

Input: labelled DNA sequences, either one FASTA per class (every record of the file is one
sequence of that class; plain, gzip or bgzip) or a TSV whose header names the columns
`sequence` and `label` (other columns are ignored; blank lines are skipped). Sequences are
tokenized with genossa.sequence (A C G T N, IUPAC codes read as N, case ignored); any other
character is an error naming the file and the record or line.

Embedding: each sequence is embedded on its own terms, the mean over its bases of the model's
per-base embeddings at full width (fp32 [n, d_model]); the Matryoshka scales
(`model.config.mrl_dims`) are prefixes of that one vector. Sequences are batched only with
sequences of exactly the same length, so no padding ever enters a model (a bidirectional
model would see it) and each embedding is what the sequence alone gives. Each sequence is
read in one forward pass, so very long sequences cost memory in proportion to their length.

Probe, per dimension d: standardize the first d channels, then logistic regression
(scikit-learn Pipeline of StandardScaler and LogisticRegression, L2, C=1), scored by
stratified k-fold cross-validation (StratifiedKFold, shuffled with `seed`; the same folds for
every d). Reported per d: accuracy, and AUROC (two classes: roc_auc_score of the second class
in sorted label order; more: one-vs-rest, macro average), each as mean and standard
deviation (numpy's, ddof=0) over the folds. Chance is the accuracy of always answering the
largest class, and AUROC 0.5.

Outputs (`ProbeResult.save`): probe.tsv (dim, accuracy_mean, accuracy_std, auroc_mean,
auroc_std) and probe.png (both scores against dimension, Agg backend).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from genossa.errors import GenossaError, InputFormatError
from genossa.sequence.tokenize import tokenize

TSV_FILE = "probe.tsv"
PLOT_FILE = "probe.png"
TSV_COLUMNS = ("dim", "accuracy_mean", "accuracy_std", "auroc_mean", "auroc_std")


@dataclass
class LabelledSequences:
    tokens: list[np.ndarray]
    """uint8 tokens of each sequence (genossa alphabet)."""
    labels: np.ndarray
    """str [n]: the class of each sequence."""

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels.tolist()).items()))


@dataclass
class ProbeRow:
    dim: int
    accuracy_mean: float
    accuracy_std: float
    auroc_mean: float
    auroc_std: float


@dataclass
class ProbeResult:
    rows: list[ProbeRow]
    classes: dict[str, int]
    """Sequences per class (sorted by label)."""
    folds: int
    seed: int
    checkpoint: str
    seconds: float
    embeddings: np.ndarray | None = None
    """fp32 [n, widest dim]: the mean-pooled embeddings that were probed (input order)."""

    @property
    def chance_accuracy(self) -> float:
        return max(self.classes.values()) / sum(self.classes.values())

    def format(self) -> str:
        n = sum(self.classes.values())
        auroc = "auroc" if len(self.classes) == 2 else "auroc (ovr macro)"
        lines = [f"linear probe of {self.checkpoint}: {n:,} sequences, "
                 + ", ".join(f"{k} {v:,}" for k, v in self.classes.items())
                 + f"; {self.folds}-fold stratified CV (seed {self.seed})",
                 f"{'dim':>6}  {'accuracy':>17}  {auroc:>17}"]
        for r in self.rows:
            lines.append(f"{r.dim:>6}  {r.accuracy_mean:>8.4f} ± {r.accuracy_std:<6.4f}  "
                         f"{r.auroc_mean:>8.4f} ± {r.auroc_std:<6.4f}")
        lines.append(f"chance: accuracy {self.chance_accuracy:.4f}, auroc 0.5; {self.seconds:.1f} s")
        return "\n".join(lines)

    def save(self, out: str | Path) -> tuple[Path, Path]:
        """Write probe.tsv and probe.png into the folder `out` (created if needed)."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise GenossaError(f"{out}: --out must be a folder, and this is a file")
        out.mkdir(parents=True, exist_ok=True)
        tsv = out / TSV_FILE
        tsv.write_text("\t".join(TSV_COLUMNS) + "\n" + "".join(
            f"{r.dim}\t{r.accuracy_mean:.6f}\t{r.accuracy_std:.6f}\t{r.auroc_mean:.6f}\t{r.auroc_std:.6f}\n"
            for r in self.rows))
        png = out / PLOT_FILE
        self.plot(png)
        return tsv, png

    def plot(self, path: str | Path) -> Path:
        """Accuracy and AUROC (mean ± std over folds) against dimension, as a PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        dims = [r.dim for r in self.rows]
        for name, color in (("accuracy", "C0"), ("auroc", "C1")):
            mean = [getattr(r, f"{name}_mean") for r in self.rows]
            std = [getattr(r, f"{name}_std") for r in self.rows]
            ax.errorbar(dims, mean, yerr=std, marker="o", capsize=3, color=color,
                        label=name if name == "accuracy" or len(self.classes) == 2 else "auroc (ovr macro)")
        ax.axhline(self.chance_accuracy, color="C0", linestyle=":", label="chance accuracy")
        ax.axhline(0.5, color="C1", linestyle=":", label="chance auroc")
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("embedding dimension (Matryoshka prefix)")
        ax.set_ylabel(f"score ({self.folds}-fold CV)")
        ax.set_ylim(min(0.45, self.chance_accuracy - 0.05), 1.02)
        ax.set_title(f"linear probe: {'/'.join(Path(self.checkpoint).parts[-2:])}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        return Path(path)


def read_class_fastas(classes: Sequence[tuple[str, str | Path]]) -> LabelledSequences:
    """One FASTA per class: [(label, path), ...]; every record is a sequence of that class."""
    from genossa.io.fasta import stream_records

    seen: set[str] = set()
    tokens, labels = [], []
    for label, path in classes:
        if not label:
            raise GenossaError(f"--class ={path}: the class name is empty (use NAME=FILE)")
        if label in seen:
            raise GenossaError(f"--class {label!r} is given twice")
        seen.add(label)
        path = Path(path)
        if not path.is_file():
            raise InputFormatError(f"{path}: FASTA of class {label!r} not found")
        for name, seq in stream_records(path):
            if not seq:
                raise InputFormatError(f"{path}: record {name!r}: empty sequence")
            tokens.append(tokenize(seq, source=str(path), record=name))
            labels.append(label)
    return LabelledSequences(tokens, np.array(labels, dtype=str))


def read_labelled_tsv(path: str | Path) -> LabelledSequences:
    """A TSV with a header naming the columns `sequence` and `label`."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: TSV not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputFormatError(f"{path}: not a text TSV (is it compressed?)") from None
    numbered = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise InputFormatError(f"{path}: empty TSV (expected a header with the columns sequence and label)")
    header = [c.strip() for c in numbered[0][1].split("\t")]
    missing = [c for c in ("sequence", "label") if c not in header]
    if missing:
        raise InputFormatError(f"{path}: line {numbered[0][0]}: the header lacks the column {missing[0]!r} "
                               f"(it needs tab-separated columns sequence and label; found {header!r})")
    at_seq, at_label = header.index("sequence"), header.index("label")
    tokens, labels = [], []
    for number, line in numbered[1:]:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputFormatError(f"{path}: line {number}: {len(fields)} tab-separated fields, "
                                   f"the header has {len(header)}")
        seq, label = fields[at_seq].strip(), fields[at_label].strip()
        if not seq or not label:
            raise InputFormatError(f"{path}: line {number}: empty {'sequence' if not seq else 'label'}")
        tokens.append(tokenize(seq, source=f"{path}: line {number}"))
        labels.append(label)
    if not tokens:
        raise InputFormatError(f"{path}: no sequences after the header")
    return LabelledSequences(tokens, np.array(labels, dtype=str))


def embed_sequences(model, tokens: Sequence[np.ndarray], *, device, precision: str = "fp32",
                    batch_size: int = 8) -> np.ndarray:
    """Mean-pooled full-width embeddings, fp32 [n, d_model] in input order. Sequences are
    batched only with others of the same length (no padding)."""
    import torch

    from genossa.inference import autocast

    out = np.empty((len(tokens), model.config.d_model), dtype=np.float32)
    lengths = np.array([t.size for t in tokens])
    order = np.argsort(lengths, kind="stable")
    lo = 0
    while lo < order.size:
        hi = lo + 1
        while hi < order.size and hi - lo < batch_size and lengths[order[hi]] == lengths[order[lo]]:
            hi += 1
        idx = order[lo:hi]
        batch = torch.from_numpy(np.stack([tokens[i] for i in idx]).astype(np.int64)).to(device)  # [B, L]
        with torch.no_grad(), autocast(device, precision):
            emb = model.embed(batch, pool="mean")  # [B, d_model]
        out[idx] = emb.float().cpu().numpy()
        lo = hi
    return out


def probe_embeddings(embeddings: np.ndarray, labels: np.ndarray, dims: Sequence[int], *, folds: int = 5,
                     seed: int = 0, C: float = 1.0) -> list[ProbeRow]:
    """Cross-validated logistic-regression probe of embeddings[:, :d] for each d in dims."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_classes(labels, folds)
    binary = np.unique(labels).size == 2
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rows = []
    for d in dims:
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        scores = cross_validate(pipe, embeddings[:, :d], labels, cv=cv,
                                scoring={"accuracy": "accuracy", "auroc": "roc_auc" if binary else "roc_auc_ovr"})
        acc, auc = scores["test_accuracy"], scores["test_auroc"]
        rows.append(ProbeRow(int(d), float(acc.mean()), float(acc.std()), float(auc.mean()), float(auc.std())))
    return rows


def check_classes(labels: np.ndarray, folds: int) -> None:
    if folds < 2:
        raise GenossaError(f"--folds must be at least 2, got {folds}")
    counts = Counter(np.asarray(labels).tolist())
    if len(counts) < 2:
        raise GenossaError(f"a probe needs at least two classes; found only {sorted(counts) or 'none'}")
    small = sorted((n, k) for k, n in counts.items() if n < folds)
    if small:
        n, k = small[0]
        raise GenossaError(f"class {k!r} has {n} sequence{'s' if n != 1 else ''}, fewer than --folds {folds} "
                           f"(each fold needs one of every class; lower --folds or add sequences)")


def evaluate_probe(
    checkpoint: str | Path,
    *,
    classes: Sequence[tuple[str, str | Path]] = (),
    tsv: str | Path | None = None,
    folds: int = 5,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "auto",
    precision: str = "auto",
) -> ProbeResult:
    """Probe the embeddings of `checkpoint` on labelled sequences (one FASTA per class as
    [(label, path), ...], or a TSV) at every Matryoshka prefix; see the module docstring."""
    if classes and tsv is not None:
        raise GenossaError("give the labelled sequences as --class NAME=FILE (one per class) or as --tsv, not both")
    if not classes and tsv is None:
        raise GenossaError("no labelled sequences: pass --class NAME=FILE.fa (one per class) or --tsv FILE")
    if batch_size < 1:
        raise GenossaError(f"--batch-size must be at least 1, got {batch_size}")
    t0 = time.perf_counter()
    data = read_class_fastas(classes) if classes else read_labelled_tsv(tsv)  # type: ignore[arg-type]
    check_classes(data.labels, folds)

    from genossa.inference import load_model, resolve_precision

    loaded = load_model(checkpoint, device)
    precision = resolve_precision(precision, loaded.device)
    embeddings = embed_sequences(loaded.model, data.tokens, device=loaded.device, precision=precision,
                                 batch_size=batch_size)
    if not np.isfinite(embeddings).all():
        raise GenossaError(f"{checkpoint}: the model gives non-finite embeddings (NaN or inf); nothing to probe")
    rows = probe_embeddings(embeddings, data.labels, loaded.model.config.mrl_dims, folds=folds, seed=seed)
    return ProbeResult(rows, data.counts(), folds, seed, str(checkpoint), time.perf_counter() - t0, embeddings)
