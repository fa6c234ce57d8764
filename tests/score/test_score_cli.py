"""`genossa score` through the installed console script: a run, its progress bar with
variants/s, and one-line errors (exit 1, no traceback) for bad inputs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest
from click.testing import CliRunner

from genossa import resources
from genossa.cli import cli

from score_helpers import DOWNSTREAM, WINDOW, write_vcf

FASTA = str(resources.ECOLI_FASTA)
LENGTHS = {"NC_007779.1": 300000, "NC_007779.1_2000000_2100000": 100000}


def _genossa(*args, cwd):
    beside = Path(sys.executable).parent / "genossa"
    exe = str(beside) if beside.exists() else shutil.which("genossa")
    assert exe, "the genossa console script is not installed"
    env = {"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)}
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env)


def _args(model, vcf, out="out.vcf.gz", fasta=FASTA):
    return ["score", "--checkpoint", str(model), "--fasta", fasta, "--vcf", str(vcf), "--out", str(out),
            "--window", str(WINDOW), "--downstream", str(DOWNSTREAM), "--quiet"]


def test_cli_scores_the_bundled_vcf(tiny_model_dir, tmp_path):
    result = _genossa(*_args(tiny_model_dir, resources.ECOLI_VARIANTS_VCF), "--table", "t.tsv", "--rc-average",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # var050 deletes the last 2 bases of a contig: nothing follows it on the forward strand, so
    # only the reverse strand scores it
    assert "scored 51 of 52 ALT alleles in 50 records" in result.stdout and "variants/s" in result.stdout
    assert "not scored: symbolic 1\n" in result.stdout
    with pysam.VariantFile(str(tmp_path / "out.vcf.gz")) as vf:
        assert "mean of both strands" in vf.header.info["GENOSSA_LLR"].description
        assert sum(1 for _ in vf) == 50
    assert (tmp_path / "t.tsv").exists() and (tmp_path / "out.vcf.gz.tbi").exists()


def test_progress_bar_reports_variants_per_second(tiny_model_dir, tmp_path):
    args = [a for a in _args(tiny_model_dir, resources.ECOLI_VARIANTS_VCF, tmp_path / "o.vcf.gz") if a != "--quiet"]
    result = CliRunner().invoke(cli, args + ["--methods", "llr"])
    assert result.exit_code == 0, result.output
    assert "variant/s" in result.stderr and "genossa score" in result.stderr


def _bad_inputs(tmp_path, model):
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    (tmp_path / "malformed.vcf").write_text(header + "NC_007779.1\t10\ta\tA\tC\t.\t.\t.\nNC_007779.1\tten\tb\tA\tC\n")
    write_vcf(tmp_path / "chrx.vcf", {"chrX": 1000}, ["chrX\t5\tx1\tA\tC\t.\t.\t."])
    write_vcf(tmp_path / "unsorted.vcf", LENGTHS, ["NC_007779.1\t500\tu1\tA\tC\t.\t.\t.",
                                                   "NC_007779.1\t100\tu2\tA\tC\t.\t.\t."])
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "config.json").write_text("{}")
    return {
        "missing": (_args(model, "nope.vcf"), "nope.vcf: VCF file not found"),
        "malformed": (_args(model, "malformed.vcf"), "malformed.vcf: record 2: malformed VCF record"),
        "contig": (_args(model, "chrx.vcf"), "chrx.vcf: record 1 (chrX:5 x1): contig 'chrX' is not in the reference"),
        "checkpoint": (_args(tmp_path / "not_a_model", resources.ECOLI_VARIANTS_VCF),
                       "not_a_model: not an exported genossa model (no model.safetensors)"),
        "unsorted": (_args(model, "unsorted.vcf"), "record 2 (NC_007779.1:100 u2): POS 100 comes after 500"),
        "out_name": (_args(model, resources.ECOLI_VARIANTS_VCF, out="out.vcf"), "out.vcf: the scored VCF is bgzipped"),
        "window": (_args(model, resources.ECOLI_VARIANTS_VCF) + ["--window", "20"], "--window (20) must exceed"),
        "precision": (_args(model, resources.ECOLI_VARIANTS_VCF) + ["--device", "cpu", "--precision", "bf16-weights"],
                      "--precision bf16-weights needs a CUDA device"),
    }


@pytest.mark.parametrize("case", ["missing", "malformed", "contig", "checkpoint"])
def test_errors_are_one_line_through_the_installed_cli(tiny_model_dir, tmp_path, case):
    args, expected = _bad_inputs(tmp_path, tiny_model_dir)[case]
    result = _genossa(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("genossa: error: "), result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "out.vcf.gz").exists()


@pytest.mark.parametrize("case", ["unsorted", "out_name", "window", "precision"])
def test_more_input_errors(tiny_model_dir, tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, expected = _bad_inputs(tmp_path, tiny_model_dir)[case]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert expected in result.stderr
