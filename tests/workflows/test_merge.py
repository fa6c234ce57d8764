"""genossa.merge and genossa.shards on a small random genome: shard stores merge into the
store one run writes; shards from another model or with other settings, overlapping shards,
missing shards and foreign windows are refused (nothing written); scored VCF shards
concatenate in reference order, and mismatched or overlapping ones are refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest
import torch
import zarr

from genossa.embed import embed_genome
from genossa.errors import GenossaError
from genossa.merge import merge_embedding_stores, merge_scored_vcfs
from genossa.models import GenossaLM, tiny
from genossa.shards import genome_shards, plan_shards, split_vcf, write_shard_bed
from genome_helpers import random_genome, write_fasta

WINDOW = 256
EMBED = dict(window=WINDOW, batch_size=4, chunk=64, device="cpu", bedgraph=False, progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    records = random_genome(lengths=(1500, 700, 300))
    fasta = write_fasta(root / "genome.fa", records)
    torch.manual_seed(0)
    model = GenossaLM(tiny()).save_pretrained(root / "model")
    torch.manual_seed(1)
    other = GenossaLM(tiny()).save_pretrained(root / "other")
    lengths = {k: len(v) for k, v in records.items()}
    shards = {}
    for shard in plan_shards(lengths):
        bed = write_shard_bed(shard, lengths, root / f"{shard.id}.bed")
        shards[shard.id] = embed_genome(model, fasta, root / f"{shard.id}.zarr", regions=bed, **EMBED).path
    return root, fasta, model, other, lengths, shards


def test_plan_shards_groups_consecutive_records():
    lengths = {"chr1": 100, "chr2": 30, "chr3": 40, "chrUn:x|1": 5}
    assert [s.contigs for s in plan_shards(lengths)] == [("chr1",), ("chr2",), ("chr3",), ("chrUn:x|1",)]
    assert plan_shards(lengths)[3].id == "0003_chrUn_x_1"
    grouped = plan_shards(lengths, shard_bases=60)
    assert [s.contigs for s in grouped] == [("chr1",), ("chr2", "chr3"), ("chrUn:x|1",)]
    assert [s.bases for s in grouped] == [100, 70, 5]


def test_merge_equals_one_run_in_any_shard_order(setup, tmp_path):
    root, fasta, model, _, _, shards = setup
    direct = embed_genome(model, fasta, tmp_path / "direct.zarr", **EMBED).path
    out = merge_embedding_stores(list(shards.values())[::-1], tmp_path / "merged.zarr", fasta=fasta,
                                 bedgraph=tmp_path / "merged.bedgraph").out
    a, b = zarr.open_group(str(direct), mode="r"), zarr.open_group(str(out), mode="r")
    for name in a.array_keys():
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    assert b.attrs["complete"] is True and b.attrs["genossa"]["windows"] == a["start"].shape[0]
    assert (tmp_path / "merged.bedgraph").read_text().count("\n") > 100
    with pytest.raises(GenossaError, match="already there"):
        merge_embedding_stores(list(shards.values()), out, fasta=fasta)


def _refused(shards, out, fasta, match):
    with pytest.raises(GenossaError, match=match):
        merge_embedding_stores(shards, out, fasta=fasta)
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_refuses_shards_of_another_model_or_other_settings(setup, tmp_path):
    root, fasta, _, other, lengths, shards = setup
    ids = list(shards)
    bed = root / f"{ids[1]}.bed"
    alien = embed_genome(other, fasta, tmp_path / "alien.zarr", regions=bed, **EMBED).path
    _refused([shards[ids[0]], alien, shards[ids[2]]], tmp_path / "m.zarr", fasta, "another model")
    narrow = embed_genome(setup[2], fasta, tmp_path / "narrow.zarr", regions=bed, **{**EMBED, "window": 128}).path
    _refused([shards[ids[0]], narrow, shards[ids[2]]], tmp_path / "m.zarr", fasta, r"other settings than .*window: 128 vs 256")


def test_refuses_overlap_gap_and_foreign_windows(setup, tmp_path):
    root, fasta, model, _, lengths, shards = setup
    ids = list(shards)
    _refused([shards[ids[0]], shards[ids[2]]], tmp_path / "m.zarr", fasta, r"miss .* windows .*chr2")
    whole = embed_genome(model, fasta, tmp_path / "whole.zarr", **EMBED).path
    _refused([whole, shards[ids[1]]], tmp_path / "m.zarr", fasta, "also in .*must not overlap")
    part = tmp_path / "part.bed"
    part.write_text("chr1\t100\t1500\n")
    shifted = embed_genome(model, fasta, tmp_path / "shifted.zarr", regions=part, **EMBED).path
    _refused([shifted, shards[ids[1]], shards[ids[2]]], tmp_path / "m.zarr", fasta, "not one of the genome's windows")
    small = write_fasta(tmp_path / "small.fa", random_genome(lengths=(1500, 700)))
    _refused(list(shards.values()), tmp_path / "m.zarr", small, "another genome")


VCF = """##fileformat=VCFv4.2
##contig=<ID=chr1,length=1500>
##contig=<ID=chr2,length=700>
##contig=<ID=chr3,length=300>
##INFO=<ID=X,Number=1,Type=Integer,Description="x">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""


def _vcf(path: Path, rows: list[tuple[str, int, str, str]], extra_header: str = "") -> Path:
    body = "".join(f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\tX={p}\n" for c, p, r, a in rows)
    text = VCF.replace("#CHROM", extra_header + "#CHROM") + body
    plain = path.with_suffix(".plain")
    plain.write_text(text)
    pysam.tabix_compress(str(plain), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    return path


def test_split_then_merge_vcf_round_trip(setup, tmp_path):
    root, fasta, _, _, lengths, shards = setup
    rows = [("chr1", 5, "A", "C"), ("chr1", 900, "A", "G"), ("chr2", 3, "C", "T"), ("chr3", 10, "G", "A")]
    source = _vcf(tmp_path / "in.vcf.gz", rows)
    parts = []
    for shard in genome_shards(fasta):
        parts.append(tmp_path / f"{shard.id}.vcf.gz")
        split_vcf(source, root / f"{shard.id}.bed", parts[-1])
    assert merge_scored_vcfs(parts[::-1], tmp_path / "out.vcf.gz", fasta=fasta, source=source) == 4
    with pysam.VariantFile(str(tmp_path / "out.vcf.gz")) as vf:
        assert [(r.chrom, r.pos) for r in vf] == [(c, p) for c, p, _, _ in rows]
    assert (tmp_path / "out.vcf.gz.tbi").exists()
    with pytest.raises(GenossaError, match="once each"):
        merge_scored_vcfs(parts[:2], tmp_path / "o2.vcf.gz", fasta=fasta, source=source)
    with pytest.raises(GenossaError, match="as .* does"):
        merge_scored_vcfs([parts[0], source], tmp_path / "o3.vcf.gz", fasta=fasta)
    scored = _vcf(tmp_path / "s.vcf.gz", rows[2:3], '##genossa_score=<Weights_sha256=abc>\n')
    with pytest.raises(GenossaError, match="another model"):
        merge_scored_vcfs([parts[0], scored], tmp_path / "o4.vcf.gz")
    assert not any((tmp_path / f"o{i}.vcf.gz").exists() for i in (2, 3, 4))


def test_cli_merge_reports_one_line_errors(setup, tmp_path):
    root, fasta, _, _, _, shards = setup
    exe = Path(sys.executable).parent / "genossa"
    ids = list(shards)
    proc = subprocess.run([str(exe), "shards", "merge-embeddings", str(shards[ids[0]]), "--fasta", str(fasta),
                           "--out", str(tmp_path / "m.zarr")], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("genossa: error: the shards miss")
    assert proc.stderr.count("\n") == 1
    plan = subprocess.run([str(exe), "shards", "plan", "--fasta", str(fasta)], capture_output=True, text=True)
    assert plan.stdout.splitlines() == [f"{i}\t{n}\t{c}" for i, (c, n) in
                                        zip(ids, [("chr1", 1500), ("chr2", 700), ("chr3", 300)])]
