"""genossa eval probe: embeddings and per-dimension scores against an independent recomputation
(one forward pass per sequence, pooled by hand; a fold-by-fold loop scored with numpy and
roc_auc_score), FASTA and TSV inputs, the TSV/PNG outputs, and bad input through the CLI.

The labelled set: windows of the bundled E. coli held-out record (class `genome`) against
other windows in which 40% of the A/T bases were turned into G/C (class `gc`) or of the G/C
bases into A/T (class `at`). Even an untrained model's mean embedding carries base
composition, so the probe must beat chance clearly, but not perfectly (so that the
comparison with the recomputation is not between two columns of 1.0).
"""
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from genome_helpers import write_fasta
from genossa import resources
from genossa.cli import cli
from genossa.evaluate.probe import evaluate_probe
from genossa.io.fasta import FastaGenome
from genossa.models.config import tiny
from genossa.models.hybrid import GenossaLM

N, LENGTH, RATE = 30, 128, 0.4
DIMS = [16, 32, 64, 128]  # tiny(matryoshka_dims=(16, 32, 64)): mrl_dims adds d_model = 128


def _alter(seq: str, rng, source: str, target: str) -> str:
    out = [rng.choice(list(target)) if c in source and rng.random() < RATE else c for c in seq.upper()]
    return "".join(out)


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_the_module_fixtures():
    """conftest's one_torch_thread is per test, and module fixtures are set up before it: on a
    loaded 2-core machine the embedding fixtures ran 100x slower with two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def labelled():
    genome = FastaGenome([resources.ECOLI_FASTA])
    windows = [genome.fetch(resources.HELD_OUT_CONTIG, i * 800, i * 800 + LENGTH).upper() for i in range(3 * N)]
    assert all(set(w) <= set("ACGT") for w in windows)
    rng = np.random.default_rng(0)
    return {"genome": windows[:N],
            "gc": [_alter(w, rng, "AT", "GC") for w in windows[N:2 * N]],
            "at": [_alter(w, rng, "GC", "AT") for w in windows[2 * N:]]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model")
    GenossaLM(tiny(matryoshka_dims=(16, 32, 64))).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def fastas(tmp_path_factory, labelled):
    d = tmp_path_factory.mktemp("fasta")
    return {k: write_fasta(d / f"{k}.fa", {f"{k}{i}": s for i, s in enumerate(seqs)}) for k, seqs in labelled.items()}


@pytest.fixture(scope="module")
def reference_embeddings(model_dir, labelled):
    """class -> [n, 128]: one forward pass per sequence, the per-base embeddings averaged here."""
    model = GenossaLM.from_pretrained(model_dir).eval()
    out = {}
    with torch.no_grad():
        for k, seqs in labelled.items():
            rows = []
            for s in seqs:
                tokens = torch.tensor([["ACGT".index(c) for c in s]])
                rows.append(model(tokens).embeddings[0].double().mean(0).numpy())
            out[k] = np.stack(rows)
    return out


def _reference_scores(X, y, folds, seed=0):
    """Per fold: fit scaler + logistic regression on the training part, score the held-out part."""
    classes = np.unique(y)
    acc, auc = [], []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=5000))]).fit(X[train], y[train])
        proba = pipe.predict_proba(X[test])
        acc.append(np.mean(classes[proba.argmax(1)] == y[test]))
        if classes.size == 2:
            auc.append(roc_auc_score(y[test] == classes[1], proba[:, 1]))
        else:
            auc.append(roc_auc_score(y[test], proba, multi_class="ovr", average="macro", labels=classes))
    return np.mean(acc), np.std(acc), np.mean(auc), np.std(auc)


@pytest.fixture(scope="module")
def binary_result(model_dir, fastas):
    return evaluate_probe(model_dir, classes=[("genome", fastas["genome"]), ("gc", fastas["gc"])], device="cpu")


def test_binary_probe_matches_an_independent_recomputation(binary_result, reference_embeddings):
    result = binary_result
    X = np.concatenate([reference_embeddings["genome"], reference_embeddings["gc"]])
    y = np.array(["genome"] * N + ["gc"] * N)
    np.testing.assert_allclose(result.embeddings, X, rtol=1e-4, atol=1e-5)
    assert [r.dim for r in result.rows] == DIMS
    assert result.classes == {"gc": N, "genome": N} and result.chance_accuracy == 0.5
    for row in result.rows:
        acc, acc_sd, auc, auc_sd = _reference_scores(X[:, :row.dim].astype(np.float32), y, 5)
        assert (row.accuracy_mean, row.accuracy_std) == pytest.approx((acc, acc_sd), abs=1e-9), row
        assert (row.auroc_mean, row.auroc_std) == pytest.approx((auc, auc_sd), abs=1e-9), row
    widest = result.rows[-1]
    assert widest.accuracy_mean > 0.75 and widest.auroc_mean > 0.85, result.format()
    assert any(r.accuracy_mean < 1 for r in result.rows)  # not a trivially separable set


def test_tsv_input_and_outputs_through_the_cli(tmp_path, model_dir, labelled, binary_result):
    tsv = tmp_path / "labelled.tsv"
    rows = [(s, k) for k in ("genome", "gc") for s in labelled[k]]  # the order of the FASTA run
    tsv.write_text("id\tsequence\tlabel\n" + "".join(f"s{i}\t{s}\t{k}\n" for i, (s, k) in enumerate(rows)))
    out = tmp_path / "probe"
    run = CliRunner().invoke(cli, ["eval", "probe", "--checkpoint", str(model_dir), "--tsv", str(tsv),
                                   "--out", str(out), "--device", "cpu"])
    assert run.exit_code == 0, run.output
    assert "5-fold stratified CV" in run.output and "chance: accuracy 0.5000" in run.output
    lines = (out / "probe.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["dim", "accuracy_mean", "accuracy_std", "auroc_mean", "auroc_std"]
    table = np.array([[float(v) for v in line.split("\t")] for line in lines[1:]])
    assert table[:, 0].tolist() == DIMS
    expected = [[r.dim, r.accuracy_mean, r.accuracy_std, r.auroc_mean, r.auroc_std] for r in binary_result.rows]
    np.testing.assert_allclose(table, expected, atol=1e-6)  # same sequences, same order: same folds
    for r in binary_result.rows:
        assert f"{r.dim:>6}  {r.accuracy_mean:>8.4f} ± {r.accuracy_std:<6.4f}" in run.output
    png = (out / "probe.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(out / "probe.png")
    assert image.shape[0] > 200 and image.shape[1] > 300


def test_three_classes_one_vs_rest(model_dir, fastas, reference_embeddings):
    result = evaluate_probe(model_dir, classes=[(k, fastas[k]) for k in ("genome", "gc", "at")], folds=3, seed=7,
                            device="cpu")
    X = np.concatenate([reference_embeddings[k] for k in ("genome", "gc", "at")])
    y = np.repeat(["genome", "gc", "at"], N)
    for row in result.rows:
        acc, acc_sd, auc, auc_sd = _reference_scores(X[:, :row.dim].astype(np.float32), y, 3, seed=7)
        assert (row.accuracy_mean, row.accuracy_std, row.auroc_mean, row.auroc_std) == pytest.approx(
            (acc, acc_sd, auc, auc_sd), abs=1e-9), row
    assert result.rows[-1].accuracy_mean > 0.6 and result.rows[-1].auroc_mean > 0.8, result.format()
    assert math.isclose(result.chance_accuracy, 1 / 3)


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", ["short_line", "no_label_column", "illegal_base", "too_few", "one_class",
                                  "empty_record", "both_inputs", "no_input", "duplicate_class"])
def test_bad_input_is_one_line_naming_the_file_and_record(tmp_path, model_dir, fastas, case):
    good = str(fastas["genome"])
    few = _write(tmp_path / "few.fa", ">a\nACGT\n>b\nGGCC\n>c\nATAT\n")
    empty = _write(tmp_path / "e.fa", ">x\nACGT\n>y\n")
    args, message = {
        "short_line": (["--tsv", _write(tmp_path / "t.tsv", "sequence\tlabel\nACGT\ta\nACGT\n")],
                       "t.tsv: line 3: 1 tab-separated fields, the header has 2"),
        "no_label_column": (["--tsv", _write(tmp_path / "h.tsv", "sequence\tclass\nACGT\ta\n")],
                            "h.tsv: line 1: the header lacks the column 'label'"),
        "illegal_base": (["--tsv", _write(tmp_path / "x.tsv", "label\tsequence\n\na\tACGT\nb\tACXT\n")],
                         "x.tsv: line 4: illegal character 'X' at position 3"),
        "too_few": (["--class", f"genome={good}", "--class", f"few={few}"],
                    "class 'few' has 3 sequences, fewer than --folds 5"),
        "one_class": (["--class", f"genome={good}"], "a probe needs at least two classes; found only ['genome']"),
        "empty_record": (["--class", f"genome={good}", "--class", f"e={empty}"], "e.fa: record 'y': empty sequence"),
        "both_inputs": (["--class", f"genome={good}", "--tsv", good], "not both"),
        "no_input": ([], "no labelled sequences: pass --class NAME=FILE.fa"),
        "duplicate_class": (["--class", f"a={good}", "--class", f"a={good}"], "--class 'a' is given twice"),
    }[case]
    run = CliRunner().invoke(cli, ["eval", "probe", "--checkpoint", str(model_dir), "--device", "cpu", *args])
    assert run.exit_code == 1, run.output
    assert run.output.startswith("genossa: error: ") and run.output.count("\n") == 1, run.output
    assert message in run.output, run.output


def test_class_option_needs_name_and_file(model_dir):
    run = CliRunner().invoke(cli, ["eval", "probe", "--checkpoint", str(model_dir), "--class", "genome.fa"])
    assert run.exit_code == 2 and "expected NAME=FILE.fa" in run.output
