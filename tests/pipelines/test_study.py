"""genossa.pipelines.study at toy size: every variant trains the same steps on the same tokens
in its own process, the tables and the plot are complete and consistent, one variant's held-out
bits/base is recomputed here from its exported model, and a second call retrains nothing."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pysam
import pytest
import torch
import torch.nn.functional as F

from genossa import resources
from genossa.errors import GenossaError
from genossa.models import GenossaLM
from genossa.pipelines.study import COLUMNS, VARIANTS, StudyConfig, read_tsv, run_study
from genossa.sequence.tokenize import tokenize

WINDOW, EVAL_WINDOWS = 128, 4


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    config = StudyConfig(out_dir=str(out), preset="tiny", steps=20, window=WINDOW, micro_batch_size=2, device="cpu",
                         eval_windows=EVAL_WINDOWS, recall_records=2, progress=False)
    rows = run_study(config, command="test")
    return config, out, rows


def test_one_complete_row_per_variant_with_equal_budgets(study):
    _, out, rows = study
    table = read_tsv(out / "study.tsv")
    assert [r["variant"] for r in table] == list(VARIANTS)
    assert all(list(r) == list(COLUMNS) for r in table)
    for r in table:
        for key in COLUMNS:
            if key == "recall_key_hit_rate" and r["variant"] == "mamba":
                assert r[key] == "nan"  # no attention: nothing to hit
                continue
            assert r[key] not in ("", "nan"), (r["variant"], key)
        if r["variant"] != "mamba":
            assert 0.0 <= float(r["recall_key_hit_rate"]) <= 1.0
        assert int(r["steps"]) == 20
        assert int(r["tokens"]) == 20 * 2 * WINDOW  # same tokens for every variant
        assert 1.0 < float(r["heldout_bpb"]) < 3.0
        assert 0.0 <= float(r["recall_accuracy"]) <= 1.0
        assert int(r["recall_targets"]) == 2 * 31  # records x (key length - 1)
        assert float(r["train_seconds"]) > 0 and float(r["peak_memory_mib"]) > 0
    by = {r["variant"]: r for r in table}
    # the same scored bases for all
    assert len({r["heldout_targets"] for r in table}) == 1
    hybrid = int(by["scan"]["params"])
    assert {int(by[v]["params"]) for v in ("random", "strided", "dense")} == {hybrid}
    assert abs(int(by["mamba"]["params"]) - hybrid) / hybrid < 0.05
    assert by["mamba"]["attention"] == "False" and int(by["mamba"]["ssm_heads"]) > int(by["scan"]["ssm_heads"])
    assert int(by["dense"]["attn_window"]) == WINDOW
    assert [by[v]["selection"] for v in ("scan", "random", "strided")] == ["scan", "random", "strided"]
    assert float(by["dense"]["recall_key_hit_rate"]) == 1.0  # its local span holds the key
    # the variants are different models (not one run copied five times)
    assert len({r["heldout_bpb"] for r in table}) > 1


def test_markdown_and_plot(study):
    _, out, _ = study
    md = (out / "study.md").read_text()
    for v in VARIANTS:
        assert f"| {v}: " in md
    assert "scan vs random: held-out bits/base" in md and "scan vs strided: held-out bits/base" in md
    assert "- command: `test`" in md
    png = (out / "study.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_heldout_bits_per_base_recomputed_from_the_exported_model(study):
    _, out, rows = study
    row = next(r for r in rows if r["variant"] == "random")
    model = GenossaLM.from_pretrained(out / "runs" / "random_s0" / "model").eval()
    assert model.config.selection == "random"
    with pysam.FastaFile(str(resources.ECOLI_FASTA)) as fa:
        seq = fa.fetch(resources.HELD_OUT_CONTIG)
    n_windows = -(-len(seq) // WINDOW)  # adjacent windows, the last one shorter
    picked = np.unique(np.linspace(0, n_windows - 1, EVAL_WINDOWS).round().astype(int))
    bits, targets = 0.0, 0
    with torch.no_grad():
        for i in picked:
            tokens = torch.from_numpy(tokenize(seq[i * WINDOW:(i + 1) * WINDOW]).astype(np.int64))[None]
            logits = model(tokens).logits[0, :-1].double()
            nxt = tokens[0, 1:]
            scored = nxt < 4  # A, C, G, T
            nll = F.cross_entropy(logits, nxt, reduction="none")
            bits += float(nll[scored].sum()) / math.log(2)
            targets += int(scored.sum())
    assert targets == row["heldout_targets"]
    assert bits / targets == pytest.approx(row["heldout_bpb"], rel=1e-5)


def test_second_call_reuses_the_runs(study):
    config, out, rows = study
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    assert len(stamps) == len(VARIANTS)
    again = run_study(config, command="test")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert [r["heldout_bpb"] for r in again] == [r["heldout_bpb"] for r in rows]
    # the same out with another configuration is refused, not answered with the old runs
    with pytest.raises(GenossaError, match="another configuration"):
        run_study(replace(config, steps=config.steps + 1, variants=("random",)), command="test")


def test_recall_training_adds_other_records_to_the_training_fasta(tmp_path):
    """--train-recall-records: a second benchmark (another seed) is appended to the training
    FASTA; none of its keys is an evaluation record's key."""
    from genossa.evaluate.longrange import read_labels
    from genossa.io.fasta import FastaGenome
    from genossa.pipelines.study import base_config, recall_benchmark, with_recall_training

    study = StudyConfig(out_dir=str(tmp_path), preset="tiny", steps=2, window=WINDOW, device="cpu",
                        recall_records=3, train_recall_records=5, progress=False)
    base = base_config(study, 0)
    prefix, distance = recall_benchmark(study, WINDOW, tmp_path)
    cfg = with_recall_training(base, study, distance, tmp_path)
    assert cfg.data.fasta == (str(resources.ECOLI_FASTA), str(tmp_path / f"recall_train_d{distance}.fa"))
    assert cfg.model == base.model and cfg.train == base.train
    train = FastaGenome([cfg.data.fasta[1]])
    evaluation = FastaGenome([f"{prefix}.fa"])
    train_keys = {train.fetch(r["record"], r["key_start"], r["key_start"] + r["key_length"])
                  for r in read_labels(tmp_path / f"recall_train_d{distance}.tsv")}
    eval_keys = {evaluation.fetch(r["record"], r["key_start"], r["key_start"] + r["key_length"])
                 for r in read_labels(f"{prefix}.tsv")}
    assert len(train_keys) == 5 and not train_keys & eval_keys
    assert all(train.lengths[name] <= WINDOW for name in train.lengths)  # each record one window
