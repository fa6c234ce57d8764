"""`genossa windows` and summarize_windows: counts checked against independent arithmetic;
bad inputs give one error line, exit status 1, no traceback (CliRunner and the installed script)."""
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from genome_helpers import random_genome, write_fasta
from genossa.cli import cli
from genossa.data import DataConfig, summarize_windows
from genossa.resources import HELD_OUT_CONTIG
from genossa.resources.make_resources import simulate_reads

ECOLI = {"NC_007779.1": 300_000, HELD_OUT_CONTIG: 100_000}


def n_windows(size, length, stride, last="pad"):
    full = 0 if size < length else (size - length) // stride + 1
    reached = (full - 1) * stride + length if full else 0
    if reached >= size:
        return full
    return full + {"pad": full * stride < size, "end_aligned": size >= length, "drop": False}[last]


def rows(output: str) -> dict[tuple[str, str], int]:
    """(source, contig) -> windows, from the printed table."""
    out = {}
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[0] in ("fasta", "bam") and len(fields) == 7:
            out[(fields[0], fields[1])] = int(fields[2].replace(",", ""))
        if fields and fields[0] == "total":
            out[("total", "")] = int(fields[1].replace(",", ""))
    return out


def test_summary_counts(ecoli_fasta):
    cfg = DataConfig(window=9000, stride=7000, last_window="end_aligned")
    summary = summarize_windows(cfg)
    got = {r.contig: r.windows for r in summary.rows}
    assert got == {c: n_windows(n, 9000, 7000, "end_aligned") for c, n in ECOLI.items()}
    assert summary.bases == sum(n_windows(n, 9000, 7000, "end_aligned") for n in ECOLI.values()) * 9000
    assert summary.bases_per_second > 0


def test_summary_fractions(tmp_path):
    records = random_genome(seed=2, lengths=(10_000,))
    path = write_fasta(tmp_path / "g.fa", records)
    summary = summarize_windows(DataConfig(fasta=(str(path),), window=10_000))
    (row,) = summary.rows
    seq = records["chr1"]
    assert row.n_fraction == pytest.approx(seq.upper().count("N") / len(seq))
    assert row.soft_masked_fraction == pytest.approx(sum(c.islower() for c in seq) / len(seq))
    assert row.kept == 1 and summary.kept == 1


def test_cli_windows_bundled_genome():
    result = CliRunner().invoke(cli, ["windows", "--length", "20000", "--stride", "15000"])
    assert result.exit_code == 0, result.output
    expected = {("fasta", c): n_windows(n, 20000, 15000) for c, n in ECOLI.items()}
    expected[("total", "")] = sum(expected.values())
    assert rows(result.stdout) == expected
    assert "Mbases/s" in result.stdout


def test_cli_windows_bundled_bam(reads_bam):
    result = CliRunner().invoke(cli, ["windows", "--bam", str(reads_bam), "--length", "3000", "--stride", "2500"])
    assert result.exit_code == 0, result.output
    expected: dict = {}
    for r in simulate_reads():  # default filters: no 0x100/0x200/0x400/0x800, >= 1000 bases
        if r.flag & 0xF00 or len(r.sequence) < 1000:
            continue
        group = ("bam", r.contig or "*")
        expected[group] = expected.get(group, 0) + n_windows(len(r.sequence), 3000, 2500)
    expected[("total", "")] = sum(expected.values())
    assert rows(result.stdout) == expected
    assert "reads: 52 seen, 13 kept" in result.stdout


def _genossa() -> str:
    script = Path(sys.executable).with_name("genossa")
    return str(script) if script.exists() else shutil.which("genossa")


def test_installed_script_windows():
    proc = subprocess.run([_genossa(), "windows", "--length", "100000"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = {("fasta", c): n_windows(n, 100000, 100000) for c, n in ECOLI.items()}
    expected[("total", "")] = 4
    assert rows(proc.stdout) == expected


def test_installed_script_error_is_one_line(tmp_path, ecoli_fasta):
    proc = subprocess.run([_genossa(), "windows", "--bam", str(ecoli_fasta)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("genossa: error: ") and str(ecoli_fasta) in proc.stderr and "not a BAM" in proc.stderr


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (CLI arguments, words the error line must contain)."""
    cases = {}
    (tmp / "empty.fa").write_text("")
    cases["empty"] = (["--fasta", str(tmp / "empty.fa")], [str(tmp / "empty.fa"), "empty"])
    (tmp / "nohdr.fa").write_text("ACGT\n")
    cases["no_header"] = (["--fasta", str(tmp / "nohdr.fa")], [str(tmp / "nohdr.fa"), "'>' header"])
    write_fasta(tmp / "bad.fa", {"c1": "ACGT" * 50, "c2": "ACGT" * 20 + "AJGT"})
    cases["illegal"] = (["--fasta", str(tmp / "bad.fa"), "--length", "50"], [str(tmp / "bad.fa"), "'c2'", "position 82", "'J'"])
    big = write_fasta(tmp / "trunc.fa.gz", random_genome(seed=1, lengths=(300_000,)), "gzip")
    big.write_bytes(big.read_bytes()[:60_000])
    cases["truncated_gzip"] = (["--fasta", str(big)], [str(big), "truncated"])
    ro = tmp / "ro"
    ro.mkdir()
    write_fasta(ro / "noidx.fa", {"c1": "ACGT" * 100})
    stale = write_fasta(ro / "stale.fa", {"c1": "ACGT" * 100})
    subprocess.run([sys.executable, "-c", f"import pysam; pysam.faidx({str(stale)!r})"], check=True)
    write_fasta(stale, {"c1": "ACGT" * 50})
    ro.chmod(0o555)
    cases["missing_index"] = (["--fasta", str(ro / "noidx.fa")], [str(ro / "noidx.fa"), "no index"])
    cases["stale_index"] = (["--fasta", str(stale)], [str(stale), "stale index"])
    (tmp / "unknown.bed").write_text("NC_007779.1\t0\t100\nchrZ\t0\t100\n")
    cases["bed_unknown_contig"] = (["--regions", str(tmp / "unknown.bed")], [str(tmp / "unknown.bed"), "line 2", "chrZ"])
    (tmp / "fake.bam").write_bytes(gzip.compress(b"not a bam"))
    cases["not_a_bam"] = (["--bam", str(tmp / "fake.bam")], [str(tmp / "fake.bam"), "not a BAM"])
    return cases


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    cases = _bad_inputs(tmp_path)
    try:
        for name, (args, needles) in cases.items():
            result = CliRunner().invoke(cli, ["windows", *args])
            assert result.exit_code == 1, (name, result.output)
            err = result.stderr.strip()
            assert err.startswith("genossa: error: ") and "\n" not in err and "Traceback" not in result.output, (name, err)
            for needle in needles:
                assert needle in err, (name, needle, err)
    finally:
        os.chmod(tmp_path / "ro", 0o755)
