"""genossa.pipelines.genome on the bundled data: with a given model, prepare -> embed (two
record shards, merged) -> score gives the store one `embed_genome` run writes and a scored,
indexed VCF; a second call does nothing; a deleted shard alone is redone. Without a model, a
few training steps on the bundled genome come first. A plain-gzip FASTA is recompressed."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pysam
import pytest
import torch
import zarr

from genossa import resources
from genossa.config import EmbedConfig, ScoreConfig
from genossa.embed import embed_genome
from genossa.models import GenossaLM, tiny
from genossa.pipelines.genome import GenomePipelineConfig, prepare_genome, run_genome_pipeline

EMBED = EmbedConfig(window=2048, stride=8192, batch_size=8)  # every 4th window: quicker, same checks
SCORE = ScoreConfig(window=512, downstream=64)
SHARDS = ["0000_NC_007779.1", "0001_NC_007779.1_2000000_2100000"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return GenossaLM(tiny()).save_pretrained(tmp_path_factory.mktemp("model") / "model")


def test_pipeline_with_a_model_embeds_merges_scores_and_reruns_only_what_is_missing(model, tmp_path):
    config = GenomePipelineConfig(out_dir=str(tmp_path / "out"), vcfs={"ecoli": str(resources.ECOLI_VARIANTS_VCF)},
                                  checkpoint=str(model), embed=EMBED, score=SCORE, device="cpu", progress=False)
    result = run_genome_pipeline(config)
    assert result.steps_run == [f"embed:{s}" for s in SHARDS] + ["merge", "score:ecoli"]
    direct = embed_genome(model, resources.ECOLI_FASTA, tmp_path / "direct.zarr", window=2048, stride=8192, batch_size=8,
                          device="cpu", bedgraph=False, progress=False).path
    a, b = zarr.open_group(str(direct), mode="r"), zarr.open_group(str(result.embeddings), mode="r")
    # the one run batches windows of both records together (every window is 2,048 bases here),
    # the shards cannot: batch size changes fp32 rounding (measured <= 1e-6 in importance)
    np.testing.assert_allclose(a["embedding"][:], b["embedding"][:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["importance"][:], b["importance"][:], rtol=1e-5, atol=1e-5)
    assert result.bedgraph.exists()
    with pysam.VariantFile(str(result.scored["ecoli"])) as vf:
        records = list(vf)
    assert len(records) == 50 and sum("GENOSSA_LLR" in r.info for r in records) >= 48

    assert run_genome_pipeline(config).steps_run == []
    shutil.rmtree(tmp_path / "out" / "shards" / SHARDS[1] / "embeddings.zarr")
    assert run_genome_pipeline(config).steps_run == [f"embed:{SHARDS[1]}", "merge"]


def test_pipeline_trains_first_without_a_model(tmp_path):
    steps = {"train.steps": 3, "train.warmup_steps": 1, "train.eval_every": 3, "train.eval_windows": 2,
             "train.checkpoint_every": 3, "data.window": 512}
    config = GenomePipelineConfig(out_dir=str(tmp_path / "out"), train_overrides=steps,
                                  embed=EmbedConfig(window=4096, stride=65536, batch_size=8), device="cpu",
                                  bedgraph=False, progress=False)
    result = run_genome_pipeline(config)
    assert result.steps_run[0] == "train" and result.checkpoint == tmp_path / "out" / "train" / "run" / "model"
    store = zarr.open_group(str(result.embeddings), mode="r")
    assert store.attrs["genossa"]["model"]["checkpoint"] == str(result.checkpoint.resolve())
    assert result.scored == {} and result.bedgraph is None
    assert run_genome_pipeline(config).steps_run == []  # the trained model is reused


def test_prepare_genome_recompresses_plain_gzip(tmp_path):
    plain_gz = tmp_path / "genome.fa.gz"
    with gzip.open(resources.ECOLI_FASTA, "rb") as src, gzip.open(plain_gz, "wb") as dst:
        dst.write(src.read())
    (ready,) = prepare_genome([str(plain_gz)], tmp_path / "out")
    assert ready == tmp_path / "out" / "reference" / "genome.fa.bgz"
    with pysam.FastaFile(str(ready)) as fa, pysam.FastaFile(str(resources.ECOLI_FASTA)) as ref:
        assert fa.references == ref.references
        assert fa.fetch("NC_007779.1", 1000, 1100) == ref.fetch("NC_007779.1", 1000, 1100)
