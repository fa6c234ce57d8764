"""VCF in, VCF out on the bundled variants (SNVs, MNVs, indels, a multi-allelic record, contig
ends, a symbolic <DEL>): pysam re-reads the output with every original field and the order
kept, the new INFO fields declared, one value per ALT; REF mismatches are flagged or, with
strict, an error; the output appears only when complete."""
from __future__ import annotations

import gzip

import pysam
import pytest
import torch

from genossa import resources
from genossa.errors import GenossaError, InputFormatError
from genossa.score import score_variants

from score_helpers import DOWNSTREAM, WINDOW, write_vcf


@pytest.fixture(scope="module")
def scored(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "scored.vcf.gz"
    table = out.with_name("scored.tsv")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the root conftest's per-test one-thread fixture
    try:
        summary = score_variants(tiny_model_dir, resources.ECOLI_FASTA, resources.ECOLI_VARIANTS_VCF, out,
                                 window=WINDOW, downstream=DOWNSTREAM, table=table, progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return summary, out, table


def _records(path):
    with pysam.VariantFile(str(path)) as vf:
        return [r for r in vf], vf.header


def test_output_is_the_input_plus_declared_scores(scored):
    summary, out, _ = scored
    assert out.exists() and pysam.tabix_index  # bgzip + index
    assert gzip.open(out).read(2) == b"##" and open(out, "rb").read(2) == b"\x1f\x8b"
    assert (out.parent / (out.name + ".tbi")).exists()
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]
    before, header_in = _records(resources.ECOLI_VARIANTS_VCF)
    after, header = _records(out)
    assert len(after) == len(before) == summary.records == 50
    for a, b in zip(after, before):
        assert (a.chrom, a.pos, a.id, a.ref, a.alts, a.qual, list(a.filter)) == (
            b.chrom, b.pos, b.id, b.ref, b.alts, b.qual, list(b.filter))
        for key, value in b.info.items():
            assert a.info[key] == value
    for key in ("GENOSSA_LLR", "GENOSSA_N", "GENOSSA_COS64", "GENOSSA_L2_64", "GENOSSA_COS128", "GENOSSA_L2_128",
                "GENOSSA_SKIPPED"):
        assert header.info[key].number == "A", key
    assert header.info["GENOSSA_CLIPPED"].type == "Flag" and header.info["GENOSSA_REF_MISMATCH"].type == "Flag"
    for key in header_in.info:
        assert key in header.info
    assert any(r.key == "genossa_score" for r in header.records)
    # the indexed output answers region queries
    with pysam.VariantFile(str(out)) as vf:
        assert len(list(vf.fetch("NC_007779.1", 6000, 8000))) == 2


def test_every_kind_of_record(scored):
    summary, out, _ = scored
    records = {r.id: r for r in _records(out)[0]}
    kinds = {r.id: r.info["VT"] for r in records.values()}
    for rid, kind in kinds.items():
        r = records[rid]
        if kind == "SV":  # symbolic: skipped with a reason, never scored
            assert r.info["GENOSSA_SKIPPED"] == ("symbolic",) and "GENOSSA_LLR" not in r.info
            continue
        if rid == "var050":  # deletes the contig's last 2 bases: nothing after it to score
            assert r.info["GENOSSA_SKIPPED"] == ("no_downstream",)
            continue
        llr = r.info["GENOSSA_LLR"]
        assert len(llr) == len(r.alts) and all(x is not None for x in llr), rid
        assert all(n == DOWNSTREAM for n in r.info["GENOSSA_N"]) or "GENOSSA_CLIPPED" in r.info
    multi = records["var001"]
    assert multi.alts == ("C", "GA") and len(set(multi.info["GENOSSA_LLR"])) == 2
    assert "GENOSSA_CLIPPED" in records["var028"].info  # the first base of a contig
    assert "GENOSSA_CLIPPED" in records["var049"].info  # 4 bases before the contig end
    assert records["var049"].info["GENOSSA_N"] == (4,)
    assert summary.scored == 50 and summary.skipped == {"symbolic": 1, "no_downstream": 1}
    assert summary.ref_mismatches == 0 and summary.clipped == 2


def test_table_has_one_row_per_alt(scored):
    summary, out, table = scored
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert header[:7] == ["chrom", "pos", "id", "ref", "alt", "status", "n"] and "llr" in header
    assert len(rows) == summary.alleles == 52
    statuses = {r[2] + ":" + r[4]: r[header.index("status")] for r in rows}
    assert statuses["var023:<DEL>"] == "symbolic" and statuses["var001:GA"] == "scored"
    llr = {r[2] + ":" + r[4]: r[header.index("llr")] for r in rows}
    vcf_llr = {r.id: r.info.get("GENOSSA_LLR") for r in _records(out)[0]}
    assert float(llr["var001:GA"]) == pytest.approx(vcf_llr["var001"][1], rel=1e-5)


def _mismatch_vcf(tmp_path):
    fa = pysam.FastaFile(str(resources.ECOLI_FASTA))
    contig = "NC_007779.1"
    good = fa.fetch(contig, 999, 1000).upper()
    wrong = {"A": "C", "C": "G", "G": "T", "T": "A"}[fa.fetch(contig, 1999, 2000).upper()]
    rows = [
        f"{contig}\t1000\tok\t{good}\tN\t50\tPASS\tVT=SNV\tGT\t0/1",
        f"{contig}\t2000\tbad\t{wrong}\tA,C\t.\tq10\t.\tGT\t1/2",
        f"{contig}\t3000\tsame\t{fa.fetch(contig, 2999, 3001).upper()}\t{fa.fetch(contig, 2999, 3001).upper()}\t.\t.\t.\tGT\t0/0",
    ]
    return write_vcf(tmp_path / "in.vcf", dict(zip(fa.references, fa.lengths)), rows, samples=("s1",))


def test_ref_mismatch_is_flagged_and_counted(tiny_model_dir, tmp_path):
    vcf = _mismatch_vcf(tmp_path)
    out = tmp_path / "out.vcf.gz"
    summary = score_variants(tiny_model_dir, resources.ECOLI_FASTA, vcf, out, window=WINDOW, downstream=DOWNSTREAM,
                             progress=False, device="cpu")
    assert summary.ref_mismatches == 1 and "NC_007779.1:2000" in summary.ref_mismatch_examples[0]
    assert "REF does not match the reference in 1 records" in summary.format()
    records = {r.id: r for r in _records(out)[0]}
    bad = records["bad"]
    assert bad.info["GENOSSA_REF_MISMATCH"] is True and bad.info["GENOSSA_SKIPPED"] == ("ref_mismatch",) * 2
    assert "GENOSSA_LLR" not in bad.info and list(bad.filter) == ["q10"]
    assert bad.samples["s1"]["GT"] == (1, 2) and records["ok"].samples["s1"]["GT"] == (0, 1)
    assert records["ok"].qual == 50 and "GENOSSA_REF_MISMATCH" not in records["ok"].info
    assert records["same"].info["GENOSSA_LLR"] == (0.0,)  # ALT == REF through the whole job


def test_strict_makes_a_ref_mismatch_an_error(tiny_model_dir, tmp_path):
    vcf = _mismatch_vcf(tmp_path)
    out = tmp_path / "out.vcf.gz"
    with pytest.raises(InputFormatError, match=r"in.vcf: record 2 \(NC_007779.1:2000 bad\): REF '.' does not match"):
        score_variants(tiny_model_dir, resources.ECOLI_FASTA, vcf, out, window=WINDOW, downstream=DOWNSTREAM,
                       strict=True, progress=False, device="cpu")
    assert not out.exists()


def test_a_failure_while_writing_leaves_no_output(tiny_model_dir, tmp_path, monkeypatch):
    import genossa.io.vcf as vcf_io

    def broken_index(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(vcf_io.pysam, "tabix_index", broken_index)
    out = tmp_path / "out.vcf.gz"
    with pytest.raises(GenossaError, match="out.vcf.gz: cannot index the scored VCF.*disk full"):
        score_variants(tiny_model_dir, resources.ECOLI_FASTA, resources.ECOLI_VARIANTS_VCF, out,
                       window=WINDOW, downstream=DOWNSTREAM, progress=False, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_regions_restrict_scoring(tiny_model_dir, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("NC_007779.1\t6000\t8000\n")
    out = tmp_path / "out.vcf.gz"
    summary = score_variants(tiny_model_dir, resources.ECOLI_FASTA, resources.ECOLI_VARIANTS_VCF, out,
                             window=WINDOW, downstream=DOWNSTREAM, regions=bed, methods=["llr"], progress=False,
                             device="cpu")
    assert summary.scored == 3 and summary.skipped["outside_regions"] == 49
    records = _records(out)[0]
    assert len(records) == 50 and sum("GENOSSA_LLR" in r.info for r in records) == 2
    assert not any(k.startswith("GENOSSA_COS") for k in _records(out)[1].info)
