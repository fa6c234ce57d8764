"""The Snakemake workflow end to end on the bundled genome (tiny random model, CPU): two
record shards embedded and scored by the installed `genossa` command, merged into one store
equal to a single `genossa embed` run and one indexed VCF with every input record; a rerun
has nothing to do; deleting one shard's store redoes only that shard and the merge; and
`snakemake --lint` is clean."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest
import torch
import yaml
import zarr

from genossa import resources
from genossa.embed import embed_genome
from genossa.models import GenossaLM, tiny
from genossa.pretrained import DEFAULT_MODEL, resolve_checkpoint

pytest.importorskip("snakemake")

SNAKEFILE = Path(__file__).resolve().parents[2] / "workflows" / "Snakefile"
BIN = Path(sys.executable).parent
WINDOW = 2048
SHARDS = ["0000_NC_007779.1", "0001_NC_007779.1_2000000_2100000"]


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(workdir / "xdg-cache"), "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    exe = BIN / "snakemake"
    cmd = [str(exe) if exe.exists() else "snakemake", "-s", str(SNAKEFILE), "--configfile", "config.yaml", *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def _jobs(proc: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    """(rule, shard wildcard or '') of every job a run executed, from its log."""
    out, jobs = proc.stdout + proc.stderr, []
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if m:
            w = re.search(r"wildcards: .*?shard=([\w.-]+)", block)
            jobs.append((m.group(1), w.group(1) if w else ""))
    return jobs


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    torch.manual_seed(0)
    model = GenossaLM(tiny()).save_pretrained(root / "model")
    config = {
        "fasta": str(resources.ECOLI_FASTA),
        "vcfs": {"ecoli": str(resources.ECOLI_VARIANTS_VCF)},
        "checkpoint": str(model),
        "genossa": str(BIN / "genossa"),
        "device": "cpu",
        "threads": {"embed": 1, "score": 1, "train": 1},
        "embed": {"window": WINDOW, "batch_size": 8},
        "score": {"window": 512, "downstream": 64},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    first = _snakemake(root, "--cores", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return root, model, first


def test_first_run_shards_by_record_and_merges(workflow_run):
    root, _, first = workflow_run
    jobs = _jobs(first)
    assert sorted(s for r, s in jobs if r == "embed_shard") == SHARDS
    assert sorted(s for r, s in jobs if r == "score_shard") == SHARDS
    assert [r for r, _ in jobs].count("merge_embeddings") == 1 and [r for r, _ in jobs].count("merge_vcf") == 1
    for rule in ("embed", "score/ecoli", "split_vcf/ecoli"):
        assert sorted(p.stem for p in (root / "results/logs" / rule).glob("*.log")) == SHARDS
    assert len(list((root / "results/benchmarks/embed").glob("*.tsv"))) == 2


def test_merged_store_equals_one_embed_run(workflow_run, tmp_path):
    root, model, _ = workflow_run
    merged = zarr.open_group(str(root / "results/embeddings.zarr"), mode="r")
    assert merged.attrs["complete"] is True
    attrs = merged.attrs["genossa"]
    assert [m["path"].rsplit("/", 2)[-2] for m in attrs["merged_from"]] == SHARDS
    direct = tmp_path / "direct.zarr"
    torch.set_num_threads(1)
    embed_genome(model, resources.ECOLI_FASTA, direct, window=WINDOW, batch_size=8, device="cpu",
                 bedgraph=False, progress=False)
    one = zarr.open_group(str(direct), mode="r")
    assert sorted(one.array_keys()) == sorted(merged.array_keys())
    for name in one.array_keys():
        a, b = one[name][:], merged[name][:]
        if a.dtype.kind == "f":
            # each window is embedded on its own, but the one run's batches mix records (windows of
            # any lengths share a padded batch) where the shards' do not: equal up to fp32 rounding
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            assert (a == b).all(), name
    assert attrs["model"]["weights_sha256"] == one.attrs["genossa"]["model"]["weights_sha256"]
    assert attrs["settings"]["regions"] is None and attrs["windows"] == one["start"].shape[0]
    assert set(merged["contig"][:]) == set(pysam.FastaFile(str(resources.ECOLI_FASTA)).references)
    track = (root / "results/embeddings.importance.bedgraph").read_text().splitlines()
    assert track[0].startswith("track type=bedGraph") and len(track) > 1000


def test_merged_vcf_has_every_record_scored_in_reference_order(workflow_run):
    root, _, _ = workflow_run
    out = root / "results/scores/ecoli.scored.vcf.gz"
    assert Path(f"{out}.tbi").exists()
    with pysam.VariantFile(str(resources.ECOLI_VARIANTS_VCF)) as src:
        source = [(r.chrom, r.pos, r.ref, r.alts) for r in src]
    with pysam.VariantFile(str(out)) as vf:
        assert any(str(h).startswith("##genossa_score=") for h in vf.header.records)
        records = list(vf)
        merged = [(r.chrom, r.pos, r.ref, r.alts) for r in records]
        assert len(list(vf.fetch("NC_007779.1_2000000_2100000"))) > 0  # the index works
    assert merged == source
    assert sum("GENOSSA_LLR" in r.info for r in records) >= len(records) - 3  # all but the unscorable


def test_rerun_has_nothing_to_do_and_a_deleted_shard_alone_is_redone(workflow_run):
    root, _, _ = workflow_run
    again = _snakemake(root, "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert _jobs(again) == []

    kept = root / "results/shards" / SHARDS[0] / "embeddings.zarr"
    before = kept.stat().st_mtime_ns
    shutil.rmtree(root / "results/shards" / SHARDS[1] / "embeddings.zarr")
    redo = _snakemake(root, "--cores", "2")
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert sorted(_jobs(redo)) == [("all", ""), ("embed_shard", SHARDS[1]), ("merge_embeddings", "")]
    assert kept.stat().st_mtime_ns == before
    assert zarr.open_group(str(root / "results/embeddings.zarr"), mode="r").attrs["complete"] is True
    assert "Nothing to be done" in _snakemake(root, "--cores", "2").stderr


def test_lint_is_clean(workflow_run):
    root, _, _ = workflow_run
    lint = _snakemake(root, "--lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr
    assert "Lints for" not in lint.stdout + lint.stderr


def test_without_a_checkpoint_the_dry_run_trains_first(workflow_run):
    root, _, _ = workflow_run
    dry = _snakemake(root, "-n", "--config", "checkpoint=", "outdir=trained", "shard_bases=1000000")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = _jobs(dry)
    assert ("train", "") in jobs
    # shard_bases groups both records into one shard
    assert [s for r, s in jobs if r == "embed_shard"] == ["0000_NC_007779.1"]
    assert not (root / "trained").exists()


def test_a_bundled_model_name_is_a_checkpoint(workflow_run):
    root, _, _ = workflow_run
    dry = _snakemake(root, "-n", "--config", f"checkpoint={DEFAULT_MODEL}", "outdir=bundled")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = _jobs(dry)
    assert ("train", "") not in jobs and sorted(s for r, s in jobs if r == "embed_shard") == SHARDS
    # the jobs read the bundled model's files
    assert str(resolve_checkpoint(DEFAULT_MODEL)[0] / "model.safetensors") in dry.stdout + dry.stderr


def test_local_gpus_pin_each_shard_job_to_one_gpu(workflow_run):
    """With local_gpus the two shards' embed and score jobs run on cuda:0 and cuda:1 (shard
    order) and each declares its GPU as a resource, so --resources gpu_N=1 keeps one job per GPU."""
    root, _, _ = workflow_run
    dry = _snakemake(root, "-n", "-p", "--config", "local_gpus=[0, 1]", "outdir=two_gpus")
    assert dry.returncode == 0, dry.stderr[-3000:]
    out = dry.stdout + dry.stderr
    for rule in ("embed_shard", "score_shard"):
        blocks = [b for b in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", out) if re.search(rf"^rule {rule}:", b, re.M)]
        assert len(blocks) == 2, rule
        for block in blocks:
            shard = re.search(r"shard=([\w.-]+)", block).group(1)
            gpu = SHARDS.index(shard)
            assert f"--device cuda:{gpu}" in block, (rule, shard)
            assert f"gpu_{gpu}=1" in block and f"gpu_{1 - gpu}=0" in block, (rule, shard)
