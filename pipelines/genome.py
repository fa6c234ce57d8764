"""The workflow's recipe as plain Python, for users who do not run Snakemake:
prepare the genome -> train (or take a model) -> embed (sharded by record, merged) -> score.

    from genossa.pipelines.genome import GenomePipelineConfig, run_genome_pipeline

    result = run_genome_pipeline(GenomePipelineConfig(
        fasta=("genome.fa.gz",), vcfs={"clinvar": "clinvar.vcf.gz"}, out_dir="results",
        checkpoint="runs/base/model"))

Outputs under `out_dir` have the workflow's names (workflows/Snakefile): `embeddings.zarr`,
`embeddings.importance.bedgraph`, `scores/<name>.scored.vcf.gz` (+ .tbi), `shards/<id>/...`,
and, when no checkpoint is given, the training run in `train/run`. Like the workflow, each
step runs only when its output is missing, so a second call after an interruption redoes
only what is not there (an interrupted embedding resumes from its `.partial` store).

Everything runs in this process, one shard after another; for parallel shards, GPUs per job
and clusters use the Snakemake workflow, which runs the same steps as `genossa` commands.
"""
from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from genossa.config import EmbedConfig, ScoreConfig, load_config
from genossa.errors import GenossaError
from genossa.io.fasta import FastaGenome, detect_compression


@dataclass
class GenomePipelineConfig:
    """One run of the genome recipe (paths are plain strings)."""

    fasta: tuple[str, ...] = ()
    """FASTA files of one genome; empty = the bundled E. coli slice."""
    out_dir: str = "genossa-genome"
    vcfs: dict[str, str] = field(default_factory=dict)
    """VCFs to score, name -> path; each becomes scores/<name>.scored.vcf.gz."""
    checkpoint: str = ""
    """Exported model directory; empty = train one with `train_config` first."""
    train_config: str = "tiny"
    """Preset name or YAML file for training (only without `checkpoint`)."""
    train_overrides: dict[str, object] = field(default_factory=dict)
    """Dotted overrides, as `genossa train --set` (e.g. {"train.steps": 100}); data.fasta is
    set to the prepared genome unless given here."""
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    shard_bases: int = 0
    """Embedding shards: one record each (0) or records grouped up to this many bases."""
    bedgraph: bool = True
    """Write the merged importance track as embeddings.importance.bedgraph."""
    device: str = "auto"
    progress: bool = True


@dataclass
class GenomePipelineResult:
    fasta: list[Path]
    checkpoint: Path
    embeddings: Path
    bedgraph: Path | None
    scored: dict[str, Path]
    steps_run: list[str]
    """Steps that did work in this call, e.g. ["train", "embed:0000_chr1", "merge", "score:x"]."""


def prepare_genome(fasta: tuple[str, ...] | list[str], out_dir: str | Path) -> list[Path]:
    """FASTA paths with random access: plain and bgzip files are indexed in place (.fai, .gzi);
    a plain-gzip file is recompressed with bgzip into `out_dir/reference/` (once)."""
    from genossa import resources

    paths = [Path(f) for f in fasta] or [resources.ECOLI_FASTA]
    ready = []
    for path in paths:
        if not path.is_file():
            raise GenossaError(f"{path}: FASTA file not found")
        if detect_compression(path) == "gzip":
            target = Path(out_dir) / "reference" / (path.name[: -len(".gz")] + ".bgz")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                with gzip.open(path, "rb") as src, pysam.BGZFile(str(tmp), "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
                tmp.replace(target)
            path = target
        ready.append(path)
    FastaGenome(ready)  # builds missing indexes and checks that record names are unique
    return ready


def train_model(config: GenomePipelineConfig, fasta: list[Path]) -> tuple[Path, bool]:
    """The exported model: `config.checkpoint`, or a run trained into out_dir/train/run (kept:
    a second call reuses it). Returns (model directory, whether training ran now)."""
    if config.checkpoint:
        return Path(config.checkpoint), False
    from genossa.train.loop import train

    run = Path(config.out_dir) / "train" / "run"
    model = run / "model"
    if (model / "model.safetensors").is_file():
        return model, False
    overrides = {"data.fasta": [str(p) for p in fasta], **config.train_overrides}
    if config.device != "auto":
        overrides.setdefault("train.device", config.device.split(":")[0])
    summary = train(load_config(config.train_config, overrides), run, resume=(run / "checkpoints").is_dir(),
                    progress=config.progress)
    return Path(summary.export_dir), True


def embed_sharded(config: GenomePipelineConfig, fasta: list[Path], checkpoint: Path, steps: list[str]) -> Path:
    """`genossa embed` of each record shard, then `merge_embedding_stores` (as the workflow)."""
    from genossa.embed import embed_genome
    from genossa.merge import merge_embedding_stores
    from genossa.shards import plan_shards, write_shard_bed

    out = Path(config.out_dir)
    merged = out / "embeddings.zarr"
    bedgraph = out / "embeddings.importance.bedgraph" if config.bedgraph else None
    lengths = FastaGenome(fasta).lengths
    e = config.embed
    stores, embedded = [], False
    for shard in plan_shards(lengths, config.shard_bases):
        folder = out / "shards" / shard.id
        store = folder / "embeddings.zarr"
        stores.append(store)
        if store.exists():
            continue
        bed = write_shard_bed(shard, lengths, folder / "regions.bed")
        embed_genome(checkpoint, fasta, store, regions=bed, window=e.window, stride=e.stride, last=e.last,
                     dims=e.dims, pool=e.pool, per_base=e.per_base, rc_average=e.rc_average,
                     batch_size=e.batch_size, chunk=e.chunk, device=config.device, precision=e.precision,
                     dtype=e.dtype, bedgraph=False, progress=config.progress)
        steps.append(f"embed:{shard.id}")
        embedded = True
    if embedded or not merged.exists() or (bedgraph is not None and not bedgraph.exists()):
        merge_embedding_stores(stores, merged, fasta=fasta, bedgraph=bedgraph, overwrite=True)
        steps.append("merge")
    return merged


def score_vcf(config: GenomePipelineConfig, fasta: list[Path], checkpoint: Path, name: str, vcf: str | Path,
              steps: list[str]) -> Path:
    """`genossa score` of one VCF into scores/<name>.scored.vcf.gz (+ .tbi)."""
    from genossa.score import score_variants

    out = Path(config.out_dir) / "scores" / f"{name}.scored.vcf.gz"
    if out.exists() and Path(f"{out}.tbi").exists():
        return out
    s = config.score
    score_variants(checkpoint, fasta, vcf, out, window=s.window, downstream=s.downstream, methods=s.methods,
                   rc_average=s.rc_average, strict=s.strict, batch_size=s.batch_size, device=config.device,
                   progress=config.progress)
    steps.append(f"score:{name}")
    return out


def run_genome_pipeline(config: GenomePipelineConfig) -> GenomePipelineResult:
    """prepare -> train (unless `checkpoint`) -> embed -> score; see the module docstring."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps: list[str] = []
    fasta = prepare_genome(config.fasta, out)
    checkpoint, trained = train_model(config, fasta)
    if trained:
        steps.append("train")
    embeddings = embed_sharded(config, fasta, checkpoint, steps)
    scored = {name: score_vcf(config, fasta, checkpoint, name, vcf, steps) for name, vcf in config.vcfs.items()}
    bedgraph = out / "embeddings.importance.bedgraph" if config.bedgraph else None
    return GenomePipelineResult(fasta, checkpoint, embeddings, bedgraph, scored, steps)
