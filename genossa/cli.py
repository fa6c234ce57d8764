"""The `genossa` command line: thin click commands that parse, build a config, call the library.

Errors in the user's input (GenossaError) and unreadable files (OSError) are printed as one
line, `genossa: error: ...`, with exit status 1 and no traceback. Anything else is a bug in
genossa and keeps its traceback so it can be reported.
"""
from __future__ import annotations

import sys

import click

from genossa import __version__
from genossa.errors import GenossaError
from genossa.pretrained import DEFAULT_MODEL


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GenossaError as err:
            _fail(str(err))
        except OSError as err:
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            _fail(f"{where}{err.strerror or err}")
        except KeyboardInterrupt:
            click.echo("genossa: interrupted", err=True)
            sys.exit(130)


def _fail(message: str) -> None:
    # one line: a message with newlines (e.g. from a library) is folded
    click.echo("genossa: error: " + " ".join(message.split()), err=True)
    sys.exit(1)


def _checkpoint_option(command):
    return click.option(
        "--checkpoint", metavar="DIR|NAME",
        help=f"Exported model directory (a training run's model/ folder) or a bundled model's name "
             f"(`genossa models`) [default: the bundled {DEFAULT_MODEL}].",
    )(command)


def _resolve_checkpoint(checkpoint: str | None) -> str:
    """The model directory for --checkpoint; says so when the bundled default is used."""
    from genossa.pretrained import resolve_checkpoint

    path, bundled = resolve_checkpoint(checkpoint)
    if checkpoint is None:
        click.echo(f"genossa: no --checkpoint given: using the bundled model {bundled!r} ({path})", err=True)
    return str(path)


def _not_yet(command: str, issue: int) -> None:
    raise GenossaError(f"`genossa {command}` is not implemented in this version yet (tracked as issue #{issue})")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="genossa")
# the `deepspeed` launcher runs `genossa --local_rank=N train ...`; LOCAL_RANK, which it also sets, is what we read
@click.option("--local_rank", "--local-rank", "local_rank", type=int, hidden=True, expose_value=False)
def cli() -> None:
    """genossa: long-sequence genomic language models (Mamba2 + scan-informed sparse attention).

    Start with `genossa quickstart`, which trains a tiny model on the bundled E. coli genome.
    """


@cli.command()
@click.option("--fasta", "fasta", multiple=True, type=click.Path(dir_okay=False),
              help="FASTA file (plain, gzip or bgzip); repeat for multi-file genomes. Default: the bundled E. coli slice (unless --bam is given).")
@click.option("--bam", "bam", multiple=True, type=click.Path(dir_okay=False), help="BAM/CRAM of reads to window; repeatable.")
@click.option("--reference", type=click.Path(dir_okay=False), help="Reference FASTA of a CRAM [default: the first --fasta].")
@click.option("--regions", type=click.Path(dir_okay=False), help="BED of intervals to include.")
@click.option("--exclude", type=click.Path(dir_okay=False), help="BED of intervals to exclude.")
@click.option("--length", default=131072, show_default=True, type=click.IntRange(min=1), help="Window length in bases.")
@click.option("--stride", type=click.IntRange(min=1), help="Distance between window starts [default: --length].")
@click.option("--last", "last_window", default="pad", show_default=True, type=click.Choice(["drop", "pad", "end_aligned"]),
              help="The tail no full window reaches: drop it, pad it, or add a window aligned to the end.")
@click.option("--max-n", default=0.1, show_default=True, type=click.FloatRange(0, 1), help="Skip windows with a larger N fraction.")
@click.option("--min-read-length", default=1000, show_default=True, type=click.IntRange(min=0), help="Skip shorter BAM reads.")
@click.option("--min-mapq", default=0, show_default=True, type=click.IntRange(0, 255), help="Skip BAM reads with a lower MAPQ.")
def windows(fasta, bam, reference, regions, exclude, length, stride, last_window, max_n, min_read_length, min_mapq) -> None:
    """Show what a FASTA/BAM/BED input yields as model windows (counts, N and soft-masked fractions, speed)."""
    from genossa.data.config import DataConfig
    from genossa.data.windows import format_summary, summarize_windows

    config = DataConfig(
        fasta=tuple(fasta), bam=tuple(bam), reference=reference or "", regions=regions or "", exclude=exclude or "",
        window=length, stride=stride, last_window=last_window, max_n_fraction=max_n,
        min_read_length=min_read_length, min_mapq=min_mapq, shuffle=False, rc_prob=0.0,
    )
    click.echo(format_summary(summarize_windows(config), config))


@cli.command()
@click.option("--config", "config", required=True, help="Preset name (tiny, small, base, large) or YAML file.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: runs/<config name>].")
@click.option("--resume", is_flag=True, help="Continue from the last complete checkpoint in --out.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.steps=100.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--time-limit", type=click.FloatRange(min=0), metavar="MINUTES",
              help="Stop cleanly (checkpoint + export) after the first step past this wall time; --resume continues.")
def train(config, out, resume, overrides, quiet, time_limit) -> None:
    """Train a model with DeepSpeed (one CPU to many GPUs).

    One process: `genossa train --config tiny`. Several GPUs or nodes: start the same command
    under a launcher, e.g. `deepspeed --num_gpus 8 $(which genossa) train --config base` or
    `torchrun --nproc_per_node 8 $(which genossa) train --config base`.
    """
    from pathlib import Path

    from genossa.config import load_config, parse_override
    from genossa.train.loop import train as run_training

    cfg = load_config(config, dict(parse_override(o) for o in overrides))
    out = Path(out) if out else Path("runs") / Path(config).stem
    summary = run_training(cfg, out, resume=resume, progress=not quiet,
                           time_limit_s=None if time_limit is None else time_limit * 60)
    _report_training(summary)


def _report_training(summary) -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_rank() != 0:
        return
    held_out = summary.final_eval_bits_per_base
    click.echo(
        ("stopped by the time limit: " if summary.stopped_early else "")
        + f"trained {summary.steps} steps, {summary.tokens:,} tokens in {summary.seconds:.0f} s; "
        f"train bits/base {summary.final_train_bits_per_base:.4f}"
        + (f", held-out bits/base {held_out:.4f}" if held_out is not None else "")
    )
    click.echo(f"run directory: {summary.run_dir} (config.yaml, metrics.jsonl, tensorboard/, checkpoints/, loss_curves.png)")
    click.echo(f"inference model: {summary.export_dir}")


@cli.command()
@_checkpoint_option
@click.option("--fasta", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="FASTA to embed (plain, gzip or bgzip); repeat for multi-file genomes.")
@click.option("--regions", type=click.Path(dir_okay=False), help="BED of regions to embed (each line tiled on its own) [default: whole records].")
@click.option("--out", required=True, type=click.Path(), help="Output Zarr store (e.g. genome.zarr).")
@click.option("--window", default=131072, show_default=True, type=click.IntRange(min=1), help="Bases per window (one pooled embedding each).")
@click.option("--stride", type=click.IntRange(min=1), help="Distance between window starts [default: --window].")
@click.option("--last", "last_window", default="pad", show_default=True, type=click.Choice(["drop", "pad", "end_aligned"]),
              help="The tail no full window reaches: a shorter window, a window aligned to the end, or none.")
@click.option("--dims", default="", help="Matryoshka prefixes to store, e.g. 64,256 (the widest is stored) [default: all the model's].")
@click.option("--pool", default="mean", show_default=True, type=click.Choice(["mean", "max", "last"]), help="Pooling over a window's bases.")
@click.option("--per-base", is_flag=True, help="Also store per-base embeddings (large: bases x width).")
@click.option("--rc-average", is_flag=True, help="Average both strands (same result for a sequence and its reverse complement).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Windows per forward pass.")
@click.option("--chunk", type=click.IntRange(min=1), help="Bases per streaming step of a causal model [default: 16384].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "fp32", "bf16", "bf16-weights"]),
              help="auto = bf16 autocast on CUDA, fp32 on the CPU; bf16-weights also casts the weights (faster).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]), help="Stored embedding dtype.")
@click.option("--bedgraph", type=click.Path(dir_okay=False), help="Importance track as bedGraph [default: STORE minus .zarr + .importance.bedgraph].")
@click.option("--no-bedgraph", is_flag=True, help="Write no bedGraph (the track is still in the store).")
@click.option("--bedgraph-bin", default=1, show_default=True, type=click.IntRange(min=1), help="Bases per bedGraph interval (mean).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store (and bedGraph).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed(checkpoint, fasta, regions, out, window, stride, last_window, dims, pool, per_base, rc_average, batch_size,
          chunk, device, precision, dtype, bedgraph, no_bedgraph, bedgraph_bin, overwrite, quiet) -> None:
    """Write Matryoshka embeddings of a genome or regions to a Zarr store.

    One pooled embedding per window (the widest requested prefix; read [..., :64] for 64
    dims), optional per-base embeddings, and the per-base scan importance (also as bedGraph).
    An interrupted run resumes when the same command is run again; the store appears under
    --out only once complete.
    """
    import shlex

    from genossa.embed import embed_genome

    summary = embed_genome(
        _resolve_checkpoint(checkpoint), list(fasta), out, regions=regions, window=window, stride=stride, last=last_window, dims=dims,
        pool=pool, per_base=per_base, rc_average=rc_average, batch_size=batch_size, chunk=chunk, device=device,
        precision=precision, dtype=dtype, bedgraph=False if no_bedgraph else (bedgraph or True),
        bedgraph_bin=bedgraph_bin, overwrite=overwrite, progress=not quiet,
        command=shlex.join(["genossa", *sys.argv[1:]]),
    )
    resumed = f", resumed after {summary.resumed_at:,} windows" if summary.resumed_at else ""
    click.echo(f"embedded {summary.windows:,} windows ({summary.bases:,} bases) in {summary.seconds:.1f} s, "
               f"{summary.bases_per_second:,.0f} bases/s{resumed}")
    click.echo(f"store: {summary.path}" + (f"; importance bedGraph: {summary.bedgraph}" if summary.bedgraph else ""))


@cli.command()
@_checkpoint_option
@click.option("--fasta", required=True, multiple=True, help="Reference FASTA (plain or bgzip, indexed); repeatable.")
@click.option("--vcf", required=True, help="Variants: VCF, bgzipped VCF or BCF, sorted by position.")
@click.option("--out", required=True, help="Scored VCF, bgzipped and tabix-indexed (name ends with .vcf.gz).")
@click.option("--window", default=8192, show_default=True, type=click.IntRange(min=3),
              help="Bases of sequence the model reads per variant (context before it + scored positions).")
@click.option("--downstream", default=1024, show_default=True, type=click.IntRange(min=1),
              help="D: positions scored from the variant's first changed base onward (alt cost grows with D).")
@click.option("--regions", help="BED: score only records overlapping these intervals (others are copied unscored).")
@click.option("--methods", default="llr,embedding", show_default=True, help="Comma-separated scores: llr, embedding.")
@click.option("--rc-average", is_flag=True, help="Average every score over both strands (twice the work).")
@click.option("--table", help="Also write a TSV with one row per ALT allele.")
@click.option("--strict", is_flag=True, help="A REF that does not match the reference is an error (default: flag and skip).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Sequences per forward pass.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "fp32", "bf16", "bf16-weights"]),
              help="auto = bf16 autocast on CUDA, fp32 on the CPU; bf16-weights also casts the weights (faster).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def score(checkpoint, fasta, vcf, out, window, downstream, regions, methods, rc_average, table, strict, batch_size,
          device, precision, quiet) -> None:
    """Score variant effects: VCF in, scored VCF out (one value per ALT allele, Number=A).

    \b
    INFO fields added (see the README, "Variant scoring"):
      GENOSSA_LLR         ln P(alt) - ln P(ref) in nats under the causal model, summed over the
                          D positions from the variant's first changed base onward; ref and alt
                          windows have equal length and equal bases before the variant, so
                          indels and SNVs compare. Negative = the ALT is less likely.
      GENOSSA_N           positions summed (fewer than D near a contig end).
      GENOSSA_COS<d>      1 - cosine similarity of the mean ref and alt embeddings over those
                          positions, at each Matryoshka prefix d of the model.
      GENOSSA_L2_<d>      L2 distance of the same mean embeddings.
      GENOSSA_CLIPPED     flag: a window was clipped at a contig end.
      GENOSSA_REF_MISMATCH  flag: REF differs from the reference (the record is not scored).
      GENOSSA_SKIPPED     per ALT, why it was not scored (symbolic, breakend, ...).
    """
    from genossa.score import score_variants

    summary = score_variants(
        _resolve_checkpoint(checkpoint), list(fasta), vcf, out, window=window, downstream=downstream, regions=regions,
        methods=[m.strip() for m in methods.split(",") if m.strip()], rc_average=rc_average, table=table,
        strict=strict, batch_size=batch_size, device=device, precision=precision, progress=not quiet,
    )
    click.echo(summary.format())


@cli.command()
def models() -> None:
    """List the pretrained models bundled with genossa (usable as --checkpoint NAME)."""
    from genossa.pretrained import bundled_models

    for model in bundled_models():
        default = " (default)" if model.name == DEFAULT_MODEL else ""
        click.echo(f"{model.name}{default}\n  {model.summary}\n  {model.path}")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default="genossa-quickstart", show_default=True, help="Run directory.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier quickstart run in --out.")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps [default: the tiny preset's].")
def quickstart(out, overwrite, steps) -> None:
    """Train the tiny preset on the bundled E. coli genome on the CPU, then embed it and score its variants."""
    import shutil
    from pathlib import Path

    from genossa.config import load_config
    from genossa.train.loop import train as run_training

    out = Path(out)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    overrides = {"train.device": "cpu"} | ({"train.steps": steps} if steps else {})
    cfg = load_config("tiny", overrides)
    click.echo(f"1/3 training the tiny preset ({cfg.train.steps} steps, {cfg.data.window:,}-base windows) "
               "on the bundled E. coli K-12 slice")
    summary = run_training(cfg, out, resume=False)
    _report_training(summary)

    from genossa import resources
    from genossa.embed import embed_genome
    from genossa.score import score_variants

    click.echo("2/3 embedding the bundled genome")
    embedded = embed_genome(summary.export_dir, resources.ECOLI_FASTA, out / "embeddings.zarr",
                            window=cfg.embed.window, batch_size=cfg.embed.batch_size, device="cpu")
    click.echo(f"embeddings of {embedded.windows:,} windows: {embedded.path} (importance track: {embedded.bedgraph})")
    click.echo("3/3 scoring the bundled variants")
    scored = score_variants(summary.export_dir, resources.ECOLI_FASTA, resources.ECOLI_VARIANTS_VCF,
                            out / "variants.scored.vcf.gz", table=out / "variants.scores.tsv",
                            window=cfg.score.window, downstream=cfg.score.downstream, device="cpu")
    click.echo(scored.format())
    click.echo(f"everything is in {out}/")


@cli.group()
def config() -> None:
    """Inspect and validate configurations."""


@config.command("presets")
def config_presets() -> None:
    """List the presets shipped with genossa."""
    from genossa.config import preset_names

    for name in preset_names():
        click.echo(name)


@config.command("show")
@click.argument("name_or_path")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key, e.g. train.steps=100.")
def config_show(name_or_path, overrides) -> None:
    """Print the resolved config of a preset or YAML file (validated strictly)."""
    import yaml

    from genossa.config import config_to_dict, load_config, parse_override

    cfg = load_config(name_or_path, dict(parse_override(o) for o in overrides))
    click.echo(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), nl=False)


@cli.group()
def shards() -> None:
    """Split a genome and its VCFs into shards, and merge the shards' outputs (used by workflows/)."""


@shards.command("plan")
@click.option("--fasta", required=True, multiple=True, help="FASTA of the genome; repeatable.")
@click.option("--shard-bases", default=0, show_default=True, type=click.IntRange(min=0),
              help="Group consecutive records until a shard has this many bases (0: one record per shard).")
def shards_plan(fasta, shard_bases) -> None:
    """Print the shards of a genome: id, bases, records (tab-separated)."""
    from genossa.shards import genome_shards

    for s in genome_shards(list(fasta), shard_bases):
        click.echo(f"{s.id}\t{s.bases}\t{','.join(s.contigs)}")


@shards.command("regions")
@click.option("--fasta", required=True, multiple=True, help="FASTA of the genome; repeatable.")
@click.option("--shard-bases", default=0, show_default=True, type=click.IntRange(min=0), help="As in `shards plan`.")
@click.option("--shard", "shard_id", required=True, help="Shard id (from `genossa shards plan`).")
@click.option("--out", required=True, help="BED to write: one whole-record line per record of the shard.")
def shards_regions(fasta, shard_bases, shard_id, out) -> None:
    """Write the BED of one shard (input to `genossa embed --regions`)."""
    from genossa.io.fasta import FastaGenome
    from genossa.shards import find_shard, plan_shards, write_shard_bed

    lengths = FastaGenome(list(fasta)).lengths
    write_shard_bed(find_shard(plan_shards(lengths, shard_bases), shard_id), lengths, out)


@shards.command("split-vcf")
@click.option("--vcf", required=True, help="VCF/BCF to split.")
@click.option("--regions", required=True, help="BED of the shard (its records' names are used).")
@click.option("--out", required=True, help="VCF of the shard (bgzipped + tabix-indexed, ends with .vcf.gz).")
def shards_split_vcf(vcf, regions, out) -> None:
    """Copy the records of a VCF on one shard's contigs (header unchanged)."""
    from genossa.shards import split_vcf

    click.echo(f"{split_vcf(vcf, regions, out):,} records -> {out}")


@shards.command("merge-embeddings")
@click.argument("shard_stores", nargs=-1, required=True)
@click.option("--fasta", required=True, multiple=True, help="FASTA of the genome the shards must cover once.")
@click.option("--regions", help="BED, if the run covers only these intervals [default: whole records].")
@click.option("--out", required=True, help="Merged Zarr store.")
@click.option("--bedgraph", help="Also write the merged importance track as bedGraph here.")
@click.option("--bedgraph-bin", default=1, show_default=True, type=click.IntRange(min=1), help="Bases per bedGraph line.")
@click.option("--overwrite", is_flag=True, help="Replace an existing merged store.")
def shards_merge_embeddings(shard_stores, fasta, regions, out, bedgraph, bedgraph_bin, overwrite) -> None:
    """Merge shard stores of one model into one store (checks: one model and settings, every window once)."""
    import shlex

    from genossa.merge import merge_embedding_stores

    s = merge_embedding_stores(shard_stores, out, fasta=list(fasta), regions=regions, bedgraph=bedgraph,
                               bedgraph_bin=bedgraph_bin, overwrite=overwrite,
                               command=shlex.join(["genossa", *sys.argv[1:]]))
    click.echo(f"merged {s.shards} shards: {s.windows:,} windows, {s.bases:,} bases -> {s.out}")


@shards.command("merge-vcf")
@click.argument("shard_vcfs", nargs=-1, required=True)
@click.option("--fasta", multiple=True, help="Reference FASTA: its record order is the output's [default: the header's].")
@click.option("--source", help="The VCF that was split: check every record of it is in the shards once.")
@click.option("--out", required=True, help="Merged VCF (bgzipped + tabix-indexed, ends with .vcf.gz).")
def shards_merge_vcf(shard_vcfs, fasta, source, out) -> None:
    """Concatenate scored VCF shards in reference order (bgzip + tabix)."""
    from genossa.merge import merge_scored_vcfs

    n = merge_scored_vcfs(shard_vcfs, out, fasta=list(fasta) or None, source=source)
    click.echo(f"merged {len(shard_vcfs)} shards: {n:,} records -> {out}")


@cli.group("eval")
def eval_() -> None:
    """Evaluate models on your own data: bits per base, long-range recall, variant effects, linear probes."""


@eval_.command("bpb")
@_checkpoint_option
@click.option("--fasta", required=True, multiple=True, help="Held-out FASTA (plain or bgzip); repeatable.")
@click.option("--regions", help="BED of intervals to score [default: whole records].")
@click.option("--window", default=8192, show_default=True, type=click.IntRange(min=2),
              help="Bases per window; each window is read on its own (its first base is context only).")
@click.option("--rc-average", is_flag=True, help="Mean of the forward- and reverse-strand bits per base.")
@click.option("--max-windows", type=click.IntRange(min=1), help="Score only this many windows, evenly spaced.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Windows per forward pass.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]),
              help="auto: bf16 on CUDA, fp32 on the CPU.")
def eval_bpb(checkpoint, fasta, regions, window, rc_average, max_windows, batch_size, device, precision) -> None:
    """Held-out bits per base (A C G T targets; N is read but not scored), per record and in total."""
    from genossa.evaluate.bpb import evaluate_bpb

    click.echo(evaluate_bpb(_resolve_checkpoint(checkpoint), list(fasta), regions=regions, window=window, rc_average=rc_average,
                            max_windows=max_windows, batch_size=batch_size, device=device,
                            precision=precision).format())


@eval_.command("longrange")
@click.option("--out", required=True, help="Output prefix: writes PREFIX.fa and PREFIX.tsv (labels).")
@click.option("--n", "n", required=True, type=click.IntRange(min=1), help="Number of records.")
@click.option("--distance", required=True, type=click.IntRange(min=1), help="Bases from the key's start to the recall copy's start.")
@click.option("--key-length", default=32, show_default=True, type=click.IntRange(min=1), help="Bases of the planted key.")
@click.option("--margin", default=128, show_default=True, type=click.IntRange(min=0),
              help="Background bases before the key (at most) and after the recall copy (at least).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed (record i depends on seed and i only).")
def eval_longrange(out, n, distance, key_length, margin, seed) -> None:
    """Write a long-range recall benchmark: random DNA with a key repeated DISTANCE bases later."""
    from genossa.evaluate.longrange import write_benchmark

    fasta, tsv = write_benchmark(out, n, distance=distance, key_length=key_length, margin=margin, seed=seed)
    click.echo(f"{n:,} records, key {key_length} bases recalled {distance:,} bases later -> {fasta}, {tsv}")


@eval_.command("recall")
@_checkpoint_option
@click.option("--benchmark", required=True, help="PREFIX written by `genossa eval longrange` (PREFIX.fa, PREFIX.tsv).")
@click.option("--chunk", default=16384, show_default=True, type=click.IntRange(min=1),
              help="Bases per streaming step (rounded down to a multiple of the model's attn_chunk).")
@click.option("--max-records", type=click.IntRange(min=1), help="Score only the first N records.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def eval_recall(checkpoint, benchmark, chunk, max_records, device) -> None:
    """Score a model on a long-range recall benchmark: bits/base and accuracy on the recalled copy."""
    from genossa.evaluate.longrange import score_recall

    click.echo(score_recall(_resolve_checkpoint(checkpoint), benchmark, chunk=chunk, max_records=max_records, device=device).format())


@eval_.command("variants")
@click.option("--scores", required=True, help="Scored VCF (from `genossa score`).")
@click.option("--truth", required=True, help="TSV with header columns contig, pos (1-based), ref, alt and the effect column.")
@click.option("--field", default="GENOSSA_LLR", show_default=True, help="INFO field of the score (one value per ALT).")
@click.option("--column", default="effect", show_default=True, help="Truth column of measured effects (0/1 labels add AUROC).")
@click.option("--negate", is_flag=True, help="Use minus the score (e.g. so that a lower LLR predicts label 1).")
def eval_variants(scores, truth, field, column, negate) -> None:
    """Pearson and Spearman of a variant score against measured effects; AUROC for 0/1 labels."""
    from genossa.evaluate.variants import evaluate_variants

    click.echo(evaluate_variants(scores, truth, field=field, column=column, negate=negate).format())


def _class_option(ctx, param, values) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: expected NAME=FILE.fa", ctx=ctx, param=param)
        pairs.append((name, path))
    return pairs


@eval_.command("probe")
@_checkpoint_option
@click.option("--class", "classes", multiple=True, metavar="NAME=FILE.fa", callback=_class_option,
              help="FASTA of one class (every record is a sequence); repeat for each class.")
@click.option("--tsv", help="Instead of --class: TSV whose header names the columns sequence and label.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2), help="Stratified cross-validation folds.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the fold assignment.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for probe.tsv and probe.png.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Sequences per forward pass (only sequences of equal length share one).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]),
              help="auto: bf16 on CUDA, fp32 on the CPU.")
def eval_probe(checkpoint, classes, tsv, folds, seed, out, batch_size, device, precision) -> None:
    """Linear probe (standardize + logistic regression) of mean-pooled embeddings at every
    Matryoshka dimension: cross-validated accuracy and AUROC."""
    from pathlib import Path

    from genossa.evaluate.probe import evaluate_probe

    if out:
        Path(out).mkdir(parents=True, exist_ok=True)  # an unwritable --out fails before the embedding
    result = evaluate_probe(_resolve_checkpoint(checkpoint), classes=classes, tsv=tsv, folds=folds, seed=seed, batch_size=batch_size,
                            device=device, precision=precision)
    click.echo(result.format())
    if out:
        tsv_path, png_path = result.save(out)
        click.echo(f"table: {tsv_path}; plot: {png_path}")


def main() -> None:
    cli(prog_name="genossa")


if __name__ == "__main__":
    main()
